"""The evaluation space: ``log1p(counts / size_factor * target_sum)``.

Every score in scgapfill is computed in this space. The size factors are the
per-cell totals of the counts the methods receive (the masked counts), so the
truth is normalised with the same factors and a perfect imputer scores exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["check_counts", "size_factors", "lognorm", "counts_from_lognorm"]


def _check_matrix(values: Any, name: str) -> None:
    if not (sp.issparse(values) or isinstance(values, np.ndarray)):
        raise ValueError(f"{name} must be a numpy array or a scipy.sparse matrix, got {type(values).__name__}")
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D (cells x genes), got shape {values.shape}")


def _data(values: Any) -> np.ndarray:
    """The stored values: ``.data`` for sparse (the implicit zeros are fine everywhere here)."""
    return values.data if sp.issparse(values) else np.asarray(values)


def _check_finite_nonnegative(values: Any, name: str, fix: str) -> None:
    data = _data(values)
    if data.size and not np.all(np.isfinite(data)):
        raise ValueError(f"{name} contains NaN or infinite values; {fix}")
    if data.size and data.min() < 0:
        raise ValueError(f"{name} contains negative values (min {data.min():.4g}); {fix}")


def check_counts(counts: Any, name: str = "counts") -> sp.csr_matrix:
    """Validate a counts matrix and return it as float64 CSR without stored zeros.

    Parameters
    ----------
    counts
        Cells x genes counts, scipy sparse or dense.
    name
        Used in error messages.

    Returns
    -------
    scipy.sparse.csr_matrix
        A copy; masking can leave explicit zeros in ``.data``, which are dropped.
    """
    _check_matrix(counts, name)
    if counts.shape[0] < 1 or counts.shape[1] < 1:
        raise ValueError(f"{name} is empty (shape {counts.shape}); give at least one cell and one gene")
    matrix = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    _check_finite_nonnegative(matrix, name, "give raw counts (layers['counts']), not normalised values")
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


def size_factors(counts: Any) -> np.ndarray:
    """Per-cell total counts.

    Parameters
    ----------
    counts
        Cells x genes counts, scipy sparse or dense.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n_cells,)``.

    Raises
    ------
    ValueError
        If a cell has no counts (its normalisation would divide by zero).
    """
    _check_matrix(counts, "counts")
    _check_finite_nonnegative(counts, "counts", "give raw counts (layers['counts']), not normalised values")
    totals = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    empty = np.flatnonzero(totals <= 0)
    if empty.size:
        shown = ", ".join(str(i) for i in empty[:20]) + (" ..." if empty.size > 20 else "")
        raise ValueError(
            f"cell(s) {shown} have no counts ({empty.size} in all); remove them with QC (min_genes)"
        )
    return totals


def _check_size_factors(sf: Any, n_cells: int) -> np.ndarray:
    sf = np.asarray(sf, dtype=np.float64)
    if sf.shape != (n_cells,):
        raise ValueError(
            f"size_factors must have shape ({n_cells},), one per cell, got {sf.shape}; use size_factors(counts)"
        )
    if not np.all(np.isfinite(sf)) or np.any(sf <= 0):
        raise ValueError("size_factors must be finite and > 0; drop empty cells before computing them")
    return sf


def _check_target_sum(target_sum: float) -> float:
    if not np.isfinite(target_sum) or target_sum <= 0:
        raise ValueError(f"target_sum must be a finite number > 0, got {target_sum}")
    return float(target_sum)


def lognorm(counts: Any, size_factors: Any, target_sum: float = 1e4, copy: bool = True) -> Any:
    """``log1p(counts / size_factors[:, None] * target_sum)``.

    Parameters
    ----------
    counts
        Cells x genes, count scale (may be non-integer, e.g. a model's mean). Sparse
        input gives CSR output; dense gives a dense float64 array.
    size_factors
        One positive value per cell, usually ``size_factors(masked_counts)``.
    target_sum
        Counts per cell after scaling.
    copy
        ``False`` transforms a float64 CSR ``counts`` in place and returns it (for a caller that owns
        its copy: at 100k cells a second one is hundreds of MB); any other input is copied anyway.
    """
    _check_matrix(counts, "counts")
    sf = _check_size_factors(size_factors, counts.shape[0])
    target_sum = _check_target_sum(target_sum)
    _check_finite_nonnegative(counts, "counts", "lognorm takes count-scale values (>= 0), not log values")
    scale = target_sum / sf
    if sp.issparse(counts):
        out = sp.csr_matrix(counts, dtype=np.float64, copy=copy)
        # Row i's stored values are data[indptr[i]:indptr[i+1]], so repeat each scale by its row length.
        out.data *= np.repeat(scale, np.diff(out.indptr))
        np.log1p(out.data, out=out.data)
        return out
    return np.log1p(np.asarray(counts, dtype=np.float64) * scale[:, None])


def counts_from_lognorm(values: Any, size_factors: Any, target_sum: float = 1e4) -> np.ndarray:
    """Inverse of :func:`lognorm`: ``expm1(values) * size_factors[:, None] / target_sum``, dense."""
    _check_matrix(values, "values")
    sf = _check_size_factors(size_factors, values.shape[0])
    target_sum = _check_target_sum(target_sum)
    dense = values.toarray() if sp.issparse(values) else np.asarray(values)
    dense = dense.astype(np.float64, copy=False)
    if not np.all(np.isfinite(dense)):
        raise ValueError("values contains NaN or infinite entries; fix the imputation before converting back")
    return np.expm1(dense) * (sf / target_sum)[:, None]


_COMPOSITION_BLOCK_ROWS = 1024


def as_composition(values: Any, target_sum: float = 1e4) -> np.ndarray:
    """Log-normalised rows rescaled so that each cell's levels sum to ``target_sum``.

    ``log1p(target_sum * expm1(v) / sum(expm1(v)))`` per row, dense, in the input's float dtype;
    an all-zero row stays zero. A filled profile keeps its shares and loses the mass that filling
    zeros added: it is again a composition, comparable between cells of different dropout.
    """
    _check_matrix(values, "values")
    target_sum = _check_target_sum(target_sum)
    dense = values.toarray() if sp.issparse(values) else np.asarray(values)
    dtype = dense.dtype if np.issubdtype(dense.dtype, np.floating) else np.float64
    out = np.empty(dense.shape, dtype=dtype)
    # Row blocks: the float64 work stays a few MB however many cells come (each row is on its own).
    for start in range(0, dense.shape[0], _COMPOSITION_BLOCK_ROWS):
        rows = slice(start, start + _COMPOSITION_BLOCK_ROWS)
        levels = np.expm1(dense[rows].astype(np.float64))
        totals = levels.sum(axis=1, keepdims=True)
        levels *= np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
        out[rows] = np.log1p(levels, out=levels)
    return out


def expected_log_of_levels(levels: Any, level_depth: Any, depth: Any = None, target_sum: float = 1e4,
                           block_rows: int = 4096) -> np.ndarray:
    """:func:`expected_lognorm` of levels estimated per ``target_sum`` counts, float32, a block of rows at a
    time: the log-normalised value each cell's counts take on average at its own depth.

    ``levels`` are ``log1p`` of expected counts per ``target_sum`` of ``level_depth`` (each cell's total on
    the genes the levels cover); the log normalises by ``depth`` (each cell's total on every gene; default
    ``level_depth``). A cell with no depth gets zeros.
    """
    _check_matrix(levels, "levels")
    level_depth = np.asarray(level_depth, dtype=np.float64).ravel()
    depth = level_depth if depth is None else np.asarray(depth, dtype=np.float64).ravel()
    values = np.asarray(levels)
    out = np.zeros(values.shape, dtype=np.float32)
    for start in range(0, values.shape[0], block_rows):
        rows = slice(start, start + block_rows)
        live = depth[rows] > 0
        expected = np.expm1(values[rows][live].astype(np.float64)) * (level_depth[rows][live] / target_sum)[:, None]
        block = out[rows]
        block[live] = expected_lognorm(expected, depth[rows][live][:, None], target_sum)
    return out


# Above this expected count a zero draw is so rare (e^-30) that E[f(c) | c > 0] is E[f(c)], and its
# second-order (delta-method) form is closer than 1e-3 to the exact sum.
_EXACT_MAX_MEAN = 30.0


def expected_lognorm(expected: Any, library: Any, target_sum: float = 1e4, given_nonzero: bool = False) -> np.ndarray:
    """``E[log1p(target_sum * c / library)]`` for ``c ~ Poisson(expected)``, elementwise.

    The log-normalised value a count drawn at this expected level takes on average in a cell of this
    library size: the noise-free counterpart of ``X`` after ``normalize_total`` + ``log1p`` (for a
    level that is not small, less than ``log1p`` of the level: the log of a draw is on average below
    the log of its mean). With ``given_nonzero``, ``E[... | c > 0]``: what a nonzero count
    looks like, an entry with expected count 0 then giving ``log1p(target_sum / library)``, the value of
    a single count. ``expected`` and ``library`` broadcast.
    """
    mean = np.asarray(expected, dtype=np.float64)
    library = np.asarray(library, dtype=np.float64)
    mean, library = np.broadcast_arrays(mean, library)
    if np.any(mean < 0) or np.any(library <= 0):
        raise ValueError("expected counts must be >= 0 and library sizes > 0")
    scale = target_sum / library
    out = np.empty(mean.shape)
    large = mean > _EXACT_MAX_MEAN
    m, a = mean[large], scale[large]
    out[large] = np.log1p(a * m) - a * a * m / (2 * (1 + a * m) ** 2)
    # The rest term by term: p_c = p_(c-1) * mean / c, each entry dropped once its tail is negligible.
    m, a = mean[~large], scale[~large]
    index = np.arange(m.size)
    total = np.zeros(m.size)
    p = m * np.exp(-m)  # P(c = 1)
    last = np.ceil(m + 10 * np.sqrt(m) + 15)
    c = 1
    while index.size:
        total[index] += p * np.log1p(a[index] * c)
        c += 1
        keep = last[index] >= c
        index, p = index[keep], p[keep] * m[index[keep]] / c
    if given_nonzero:
        nonzero = -np.expm1(-m)  # P(c > 0)
        total = np.divide(total, nonzero, out=np.log1p(a), where=nonzero > 1e-12)
    out[~large] = total
    return out
