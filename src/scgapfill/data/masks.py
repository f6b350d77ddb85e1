"""Masks: the held-out evaluation mask, the molecular cross-validation split, and
the random masks drawn for every training batch.

The held-out mask is fixed by a seed and hides a fraction of the nonzero counts
from everything that trains or imputes; only evaluation reads their values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    import torch

MASK_MODES = ("uniform", "dropout")


def _as_csr_counts(counts: Any, what: str = "counts") -> sp.csr_matrix:
    matrix = sp.csr_matrix(counts, dtype=np.float64) if not sp.issparse(counts) else counts.tocsr().astype(np.float64)
    matrix.eliminate_zeros()
    if matrix.nnz and matrix.data.min() < 0:
        raise ValueError(f"{what} contain negative values; masks need raw counts (layers['counts'])")
    return matrix


def heldout_mask(counts: Any, fraction: float = 0.1, seed: int = 0) -> sp.csr_matrix:
    """Choose ``fraction`` of the nonzero entries of ``counts``; returns a 0/1 sparse matrix of them."""
    if not 0 < fraction < 1:
        raise ValueError(f"heldout.fraction must lie in (0, 1), got {fraction}")
    matrix = _as_csr_counts(counts)
    coo = matrix.tocoo()
    n_held = int(round(fraction * coo.nnz))
    if n_held == 0:
        raise ValueError(f"heldout.fraction={fraction} of {coo.nnz} nonzero entries holds out nothing; raise it")
    pick = np.sort(np.random.default_rng(seed).choice(coo.nnz, size=n_held, replace=False))
    mask = sp.csr_matrix(
        (np.ones(n_held, dtype=np.int8), (coo.row[pick], coo.col[pick])), shape=matrix.shape
    )
    mask.sort_indices()
    return mask


def apply_mask(counts: Any, mask: sp.spmatrix) -> sp.csr_matrix:
    """Copy of ``counts`` with the entries in ``mask`` set to zero (and dropped from the sparse structure)."""
    matrix = _as_csr_counts(counts)
    if mask.shape != matrix.shape:
        raise ValueError(f"mask shape {mask.shape} differs from counts shape {matrix.shape}")
    keep = matrix - matrix.multiply(mask.astype(bool))
    keep = sp.csr_matrix(keep)
    keep.eliminate_zeros()
    return keep


def masked_values(counts: Any, mask: sp.spmatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, values)`` of ``counts`` at the masked coordinates, in the mask's order."""
    coo = mask.tocoo()
    matrix = sp.csr_matrix(counts)
    values = np.asarray(matrix[coo.row, coo.col]).ravel()
    return coo.row.astype(np.int64), coo.col.astype(np.int64), values.astype(np.float64)


def mcv_split(counts: Any, train_fraction: float = 0.9, seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Molecular cross-validation (Batson et al. 2019): each molecule goes to train with probability p."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"mcv.train_fraction must lie in (0, 1), got {train_fraction}")
    matrix = _as_csr_counts(counts)
    values = np.rint(matrix.data).astype(np.int64)
    if not np.allclose(values, matrix.data):
        raise ValueError("molecular cross-validation needs integer counts; give raw counts, not normalised values")
    train_data = np.random.default_rng(seed).binomial(values, train_fraction)
    # Each matrix gets its own index arrays: eliminate_zeros() rewrites them in place.
    train = sp.csr_matrix(
        (train_data.astype(np.float64), matrix.indices.copy(), matrix.indptr.copy()), shape=matrix.shape
    )
    test = sp.csr_matrix(
        ((values - train_data).astype(np.float64), matrix.indices.copy(), matrix.indptr.copy()), shape=matrix.shape
    )
    train.eliminate_zeros()
    test.eliminate_zeros()
    return train, test


def sample_training_mask(
    values: "torch.Tensor",
    valid: "torch.Tensor",
    min_rate: float = 0.05,
    max_rate: float = 0.5,
    mode: str = "uniform",
    generator: "torch.Generator | None" = None,
) -> "torch.Tensor":
    """A fresh training mask for one batch.

    The rate is drawn once per batch from ``[min_rate, max_rate]``. Only ``valid``
    entries (real genes, not grid padding) can be masked. In ``dropout`` mode an
    entry's chance falls with its value (``exp(-value)``, values scaled to [0, 1]
    or log scale), so low-expression entries are hidden more often, like real dropout.
    """
    import torch

    if not 0 <= min_rate <= max_rate <= 1:
        raise ValueError(f"training_mask needs 0 <= min_rate <= max_rate <= 1, got {min_rate}, {max_rate}")
    if mode not in MASK_MODES:
        raise ValueError(f"training_mask.mode={mode!r} is not one of {list(MASK_MODES)}")
    device = values.device
    rate = min_rate + (max_rate - min_rate) * torch.rand((), generator=generator, device=device)
    if mode == "uniform":
        prob = torch.full_like(values, float(rate), dtype=torch.float32)
    else:
        weight = torch.exp(-values.float().clamp(min=0)) * valid
        mean_weight = weight.sum() / valid.sum().clamp(min=1)
        prob = (rate * weight / mean_weight.clamp(min=1e-8)).clamp(max=1.0)
    draw = torch.rand(values.shape, generator=generator, device=device)
    return (draw < prob) & valid.bool()
