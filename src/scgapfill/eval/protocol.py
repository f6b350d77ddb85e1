"""The evaluation protocol's split, written once: the held-out mask, the masked counts every method
sees, the molecular cross-validation (MCV) split, and the baselines run on the same inputs.

The masking and evaluation nodes call these, and so do the benchmark (:mod:`scgapfill.eval.benchmark`)
and the scripts under ``benchmarks/``: one seed gives the numbers ``kedro run`` gives. What is scored
on the split is :mod:`scgapfill.eval.evaluate` (the evaluation data, ``score_method``).

Everything that trains or imputes reads only the masked counts (held-out entries set to zero, truth
layers dropped) or the MCV train split (a binomial thinning of them); only the scoring reads the
processed counts, the held-out mask and the MCV test counts.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scgapfill.data import masks
from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.graph.spatial import carry_spatial
from scgapfill.eval.baselines import available_baselines, run_baseline
from scgapfill.params import BaselinesParams, HeldoutParams, MCVParams, Parameters, parse_all

log = logging.getLogger(__name__)

# obs columns derived from the unmasked counts would leak held-out totals.
_LEAKY_OBS = ("size_factor", "total_counts", "n_genes_by_counts", "total_counts_mt", "pct_counts_mt")


def counts_only_copy(template: ad.AnnData, counts: sp.csr_matrix, target_sum: float) -> ad.AnnData:
    """A new AnnData holding only ``counts`` (layer ``counts``) and their log-normalisation (``X``).

    Truth layers and count-derived obs columns of ``template`` are not carried over; its spot positions
    (``obsm["spatial"]``, ``uns["spatial"]``) are.
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
    # Spot positions carry no counts: kept, so that model.context_graph spatial can read them.
    return carry_spatial(template, adata)


def heldout_mask(processed: ad.AnnData, params: HeldoutParams) -> sp.csr_matrix:
    """``heldout.fraction`` of the nonzero counts, drawn with ``heldout.seed``: hidden from every method."""
    mask = masks.heldout_mask(processed.layers["counts"], params.fraction, params.seed)
    log.info("Held-out mask: %d of %d nonzero counts (heldout.fraction=%g, heldout.seed=%d)",
             mask.nnz, processed.layers["counts"].nnz, params.fraction, params.seed)
    return mask


def masked_counts(processed: ad.AnnData, mask: sp.csr_matrix, target_sum: float) -> ad.AnnData:
    """The data every method trains on and imputes from: held-out counts removed."""
    return counts_only_copy(processed, masks.apply_mask(processed.layers["counts"], mask), target_sum)


def mcv_split(masked: ad.AnnData, params: MCVParams, target_sum: float) -> tuple[ad.AnnData, sp.csr_matrix]:
    """Molecular cross-validation: each method denoises the train split; the test counts score it."""
    train, test = masks.mcv_split(masked.layers["counts"], params.train_fraction, params.seed)
    empty = np.asarray(train.sum(axis=1)).ravel() == 0
    if empty.any():
        raise ValueError(
            f"{int(empty.sum())} cells have no counts left in the MCV train split; "
            "raise mcv.train_fraction or qc.min_genes"
        )
    return counts_only_copy(masked, train, target_sum), test


class Split(NamedTuple):
    """One draw of the protocol: what is hidden, what the methods see, what scores them."""

    heldout_mask: sp.csr_matrix
    masked: ad.AnnData
    mcv_train: ad.AnnData
    mcv_test: sp.csr_matrix


def split(processed: ad.AnnData, parameters: "dict | Parameters", heldout_seed: int | None = None,
          mcv_seed: int | None = None) -> Split:
    """The held-out mask, the masked counts and their MCV split, as the masking pipeline makes them.

    ``heldout_seed`` and ``mcv_seed`` replace ``heldout.seed`` and ``mcv.seed`` (a benchmark's seed
    ``k`` is ``heldout.seed + k`` and ``mcv.seed + k``); by default the parameters' own.
    """
    params = parse_all(parameters)
    heldout, mcv = params.heldout, params.mcv
    if heldout_seed is not None:
        heldout = heldout.model_copy(update={"seed": heldout_seed})
    if mcv_seed is not None:
        mcv = mcv.model_copy(update={"seed": mcv_seed})
    target_sum = params.normalize.target_sum
    mask = heldout_mask(processed, heldout)
    masked = masked_counts(processed, mask, target_sum)
    train, test = mcv_split(masked, mcv, target_sum)
    return Split(mask, masked, train, test)


def _positions(name: str, adata: ad.AnnData) -> dict:
    """``knn_spatial``'s spot positions (``obsm["spatial"]``, sections in ``obs["library_id"]``)."""
    from scgapfill.graph.spatial import positions_of

    return {"positions": positions_of(adata)} if name == "knn_spatial" else {}


def run_baselines(masked: ad.AnnData, mcv_train: ad.AnnData, params: BaselinesParams) -> dict[str, dict]:
    """Each baseline imputes the masked counts and denoises the MCV train split: the U-Net's inputs."""
    available = available_baselines()
    outputs = {}
    for name in params.methods:
        if name not in available:
            # No rich markup: Kedro's console handler would read [scvi] as a style tag and drop it.
            log.warning("Baseline %s is not available here (pip install -e '.[scvi]' for scvi); skipped", name,
                        extra={"markup": False})
            continue
        kwargs = {"k": params.knn_k} if name in ("knn", "knn_spatial") else {}
        start = time.perf_counter()
        imputed = run_baseline(name, masked.layers["counts"], seed=0, **kwargs, **_positions(name, masked))
        denoised = run_baseline(name, mcv_train.layers["counts"], seed=0, **kwargs, **_positions(name, mcv_train))
        outputs[name] = {"imputed": imputed, "mcv": denoised, "seconds": time.perf_counter() - start}
        log.info("Baseline %s: %.1f s", name, outputs[name]["seconds"])
    return outputs
