"""Nodes of the masking pipeline.

Everything that trains or imputes reads only ``masked`` (held-out entries set to
zero, truth layers dropped) or ``mcv_train`` (a binomial thinning of ``masked``).
Only the evaluation pipeline reads ``processed``, ``heldout_mask`` and ``mcv_test``.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scgapfill import masks
from scgapfill.normalization import lognorm, size_factors
from scgapfill.params import parse

log = logging.getLogger(__name__)

# obs columns derived from the unmasked counts would leak held-out totals.
_LEAKY_OBS = ("size_factor", "total_counts", "n_genes_by_counts", "total_counts_mt", "pct_counts_mt")


def counts_only_copy(template: ad.AnnData, counts: sp.csr_matrix, target_sum: float) -> ad.AnnData:
    """A new AnnData holding only ``counts`` (layer ``counts``) and their log-normalisation (``X``).

    Truth layers and count-derived obs columns of ``template`` are not carried over.
    """
    counts = sp.csr_matrix(counts, dtype=np.float32)
    sf = size_factors(counts)
    obs = template.obs.drop(columns=[c for c in _LEAKY_OBS if c in template.obs]).copy()
    obs["size_factor"] = sf
    adata = ad.AnnData(
        X=sp.csr_matrix(lognorm(counts, sf, target_sum), dtype=np.float32),
        obs=obs,
        var=template.var[[c for c in ("highly_variable",) if c in template.var]].copy(),
        layers={"counts": counts},
    )
    adata.uns["label_key"] = template.uns.get("label_key", "")
    adata.uns["normalize"] = {"target_sum": target_sum}
    return adata


def make_heldout_mask(processed: ad.AnnData, heldout: dict) -> sp.csr_matrix:
    params = parse("heldout", heldout)
    mask = masks.heldout_mask(processed.layers["counts"], params.fraction, params.seed)
    log.info("Held-out mask: %d of %d nonzero counts (heldout.fraction=%g, heldout.seed=%d)",
             mask.nnz, processed.layers["counts"].nnz, params.fraction, params.seed)
    return mask


def mask_counts(processed: ad.AnnData, heldout_mask: sp.csr_matrix, normalize_params: dict) -> ad.AnnData:
    """The data every method trains on and imputes from: held-out counts removed."""
    target_sum = parse("normalize", normalize_params).target_sum
    masked = masks.apply_mask(processed.layers["counts"], heldout_mask)
    return counts_only_copy(processed, masked, target_sum)


def split_molecules(masked: ad.AnnData, mcv: dict, normalize_params: dict) -> tuple[ad.AnnData, sp.csr_matrix]:
    """Molecular cross-validation: each method denoises ``mcv_train``; ``mcv_test`` scores it."""
    params = parse("mcv", mcv)
    target_sum = parse("normalize", normalize_params).target_sum
    train, test = masks.mcv_split(masked.layers["counts"], params.train_fraction, params.seed)
    empty = np.asarray(train.sum(axis=1)).ravel() == 0
    if empty.any():
        raise ValueError(
            f"{int(empty.sum())} cells have no counts left in the MCV train split; "
            "raise mcv.train_fraction or qc.min_genes"
        )
    return counts_only_copy(masked, train, target_sum), test
