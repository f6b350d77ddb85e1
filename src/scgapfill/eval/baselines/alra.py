"""ALRA: adaptively-thresholded low-rank approximation.

Linderman, Zhao, Roulis, Kluger, "Zero-preserving imputation of single-cell RNA-seq
data", Nature Communications 13, 192 (2022). A port of the reference R code
(github.com/KlugerLab/ALRA, ``alra`` and ``choose_k``) onto numpy / scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.extmath import randomized_svd

from scgapfill.eval.baselines.simple import lognorm_counts

__all__ = ["choose_k", "alra"]

# choose_k's defaults in the reference code.
_MAX_COMPONENTS = 100
_NOISE_START = 80  # 1-based index of the first singular value treated as noise
_THRESH_SDS = 6.0
_CHOOSE_K_ITER = 2


def choose_k(values: Any, seed: int = 0) -> int:
    """Rank for ALRA from the gaps between consecutive singular values.

    A randomised SVD of up to 100 components; ``k`` is the last gap larger than
    ``mean + 6 sd`` of the tail gaps (components 80..100 as in ALRA, or the last 20%
    of the gaps when fewer components exist), and at least 2.

    Parameters
    ----------
    values
        Cells x genes lognorm matrix (dense or sparse), at least 4 cells and 4 genes.
    seed
        Random state of the randomised SVD.
    """
    n_components = min(_MAX_COMPONENTS, min(values.shape) - 1)
    if n_components < 3:
        raise ValueError(
            f"ALRA cannot choose k for a {values.shape} matrix (needs at least 4 cells and 4 genes); pass k"
        )
    _, svals, _ = randomized_svd(values, n_components, n_iter=_CHOOSE_K_ITER, random_state=seed)
    gaps = svals[:-1] - svals[1:]
    if n_components == _MAX_COMPONENTS:
        tail = gaps[_NOISE_START - 2 :]  # R: diffs[(80:100) - 1], 1-based
    else:
        tail = gaps[-max(2, int(np.ceil(0.2 * gaps.size))) :]
    mu, sigma = tail.mean(), tail.std(ddof=1)
    # A flat tail (sigma 0) would divide by zero in R; any gap above the mean then counts.
    above = gaps > mu + _THRESH_SDS * sigma if sigma > 0 else gaps > mu
    last = np.flatnonzero(above)
    k = int(last[-1]) + 1 if last.size else 2
    return min(max(k, 2), n_components)


def _nonzero_mean_sd(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column mean and sample sd (ddof=1) of the nonzero entries, and their count."""
    nonzero = matrix != 0
    count = nonzero.sum(axis=0)
    total = matrix.sum(axis=0)
    mean = np.divide(total, count, out=np.zeros(matrix.shape[1]), where=count > 0)
    squares = np.where(nonzero, (matrix - mean) ** 2, 0.0).sum(axis=0)
    sd = np.sqrt(np.divide(squares, count - 1, out=np.full(matrix.shape[1], np.nan), where=count > 1))
    return mean, sd, count


def alra(
    counts: Any,
    *,
    k: int | None = None,
    q: int = 10,
    quantile_prob: float = 0.001,
    seed: int = 0,
) -> np.ndarray:
    """Impute with ALRA.

    Steps on ``A = lognorm(counts)``: rank-``k`` reconstruction ``A_k``; zero entries at
    or below the gene's threshold ``|quantile(A_k[:, g], quantile_prob)|``; rescale each
    gene so the mean and sd of its nonzero entries match those of ``A`` (genes where both
    have more than one nonzero and ``A_k``'s sd is > 0); clip negatives to 0; finally,
    entries nonzero in ``A`` but 0 in the result get ``A``'s value back. The last two
    steps run in the reference code's order (clip, then restore).

    Parameters
    ----------
    counts
        Cells x genes (masked) counts, scipy sparse or dense.
    k
        Rank; ``None`` chooses it with :func:`choose_k`.
    q
        Power iterations of the randomised SVD.
    quantile_prob
        Quantile that sets each gene's threshold.
    seed
        Random state of the randomised SVDs.
    """
    if not 0 <= quantile_prob < 1:
        raise ValueError(f"quantile_prob must lie in [0, 1), got {quantile_prob}")
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 0:
        raise ValueError(f"q (power iterations) must be an integer >= 0, got {q!r}")
    values = lognorm_counts(counts)
    if k is None:
        k = choose_k(values, seed=seed)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= min(values.shape):
        raise ValueError(f"k must be an integer in [1, {min(values.shape)}] (min of the matrix shape), got {k!r}")
    original = values.toarray()
    u, s, vt = randomized_svd(values, int(k), n_iter=q, random_state=seed)
    low_rank = (u * s) @ vt

    threshold = np.abs(np.quantile(low_rank, quantile_prob, axis=0))
    low_rank[low_rank <= threshold] = 0.0

    mu_k, sd_k, n_k = _nonzero_mean_sd(low_rank)
    mu_a, sd_a, n_a = _nonzero_mean_sd(original)
    scale = (n_k > 1) & (n_a > 1) & (sd_k > 0)
    kept = low_rank != 0
    ratio = np.where(scale, sd_a / np.where(scale, sd_k, 1.0), 1.0)
    shift = np.where(scale, mu_a - mu_k * ratio, 0.0)
    # Only the surviving (nonzero) entries are rescaled; thresholded zeros stay zero.
    low_rank = np.where(kept, low_rank * ratio + shift, 0.0)

    np.clip(low_rank, 0.0, None, out=low_rank)
    restore = (original != 0) & (low_rank == 0)
    low_rank[restore] = original[restore]
    return low_rank
