"""Masks: the held-out evaluation mask, the molecular cross-validation split, and
the random masks (or molecule splits, :func:`split_training_molecules`) drawn for every training batch.

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
# Training modes that split each count into input and target molecules instead of hiding entries.
MOLECULE_MODES = ("molecules",)
TRAINING_MODES = MASK_MODES + MOLECULE_MODES


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
        hint = " (molecules splits counts: split_training_molecules)" if mode in MOLECULE_MODES else ""
        raise ValueError(f"training_mask.mode={mode!r} is not one of {list(MASK_MODES)}{hint}")
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


def split_training_molecules(
    counts: "torch.Tensor",
    valid: "torch.Tensor",
    min_rate: float = 0.05,
    max_rate: float = 0.5,
    generator: "torch.Generator | None" = None,
) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """A fresh binomial split of one batch's counts into input and target molecules.

    Molecular cross-validation's split (Batson et al. 2019), drawn per batch as Noise2Self draws its
    masks: each cell (row along the first axis) draws the fraction of its molecules that go to the
    target, ``rate`` uniform in ``[min_rate, max_rate]``; each entry's input is
    ``Binomial(count, 1 - rate)`` and its target the rest, so ``input + target == counts`` and no
    molecule is in both. Entries outside ``valid`` (grid padding) get none.

    Parameters
    ----------
    counts
        ``(n, ...)`` non-negative integer counts (floats holding integers).
    valid
        Broadcasts against ``counts``; true where an entry holds a gene.

    Returns
    -------
    ``(input, target, input_fraction)``: two tensors shaped like ``counts`` (float32) and the
    per-cell input fraction ``1 - rate``, shaped ``(n, 1, ..., 1)`` to broadcast against them.
    """
    import torch

    if not 0 <= min_rate <= max_rate <= 1:
        raise ValueError(f"training_mask needs 0 <= min_rate <= max_rate <= 1, got {min_rate}, {max_rate}")
    counts = (counts.float().clamp(min=0).round() * valid.expand_as(counts)).contiguous()
    device = counts.device
    per_cell = (counts.shape[0],) + (1,) * (counts.dim() - 1)
    rate = min_rate + (max_rate - min_rate) * torch.rand(per_cell, generator=generator, device=device)
    input_fraction = 1.0 - rate
    inputs = torch.binomial(counts, input_fraction.expand_as(counts).contiguous(), generator=generator)
    return inputs, counts - inputs, input_fraction
