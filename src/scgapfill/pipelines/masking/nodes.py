"""Nodes of the masking pipeline: the evaluation protocol's split (:mod:`scgapfill.eval.protocol`).

Everything that trains or imputes reads only ``masked`` (held-out entries set to
zero, truth layers dropped) or ``mcv_train`` (a binomial thinning of ``masked``).
Only the evaluation pipeline reads ``processed``, ``heldout_mask`` and ``mcv_test``.
"""

from __future__ import annotations

import anndata as ad
import scipy.sparse as sp

from scgapfill.eval import protocol
from scgapfill.eval.protocol import counts_only_copy  # noqa: F401  (the masked copies' shape, for tests)
from scgapfill.params import parse


def make_heldout_mask(processed: ad.AnnData, heldout: dict) -> sp.csr_matrix:
    return protocol.heldout_mask(processed, parse("heldout", heldout))


def mask_counts(processed: ad.AnnData, heldout_mask: sp.csr_matrix, normalize_params: dict) -> ad.AnnData:
    """The data every method trains on and imputes from: held-out counts removed."""
    return protocol.masked_counts(processed, heldout_mask, parse("normalize", normalize_params).target_sum)


def split_molecules(masked: ad.AnnData, mcv: dict, normalize_params: dict) -> tuple[ad.AnnData, sp.csr_matrix]:
    """Molecular cross-validation: each method denoises ``mcv_train``; ``mcv_test`` scores it."""
    return protocol.mcv_split(masked, parse("mcv", mcv), parse("normalize", normalize_params).target_sum)
