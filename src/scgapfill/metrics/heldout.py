"""Scores on the held-out entries: pooled, per cell and per gene."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import _dense, pearson, rmse


def _grouped_pearson_median(pred: np.ndarray, true: np.ndarray, rows: np.ndarray, min_size: int = 3) -> float:
    """Median over groups (cells, or genes) of the Pearson r of that group's held-out entries;
    groups with fewer than ``min_size`` entries or a constant side are skipped."""
    order = np.argsort(rows, kind="stable")
    rows, pred, true = rows[order], pred[order], true[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    sizes = np.diff(np.r_[starts, rows.size])
    group = np.repeat(np.arange(starts.size), sizes)
    # Centring within each cell first keeps the sums of products numerically stable.
    dp = pred - (np.add.reduceat(pred, starts) / sizes)[group]
    dt = true - (np.add.reduceat(true, starts) / sizes)[group]
    # Exact constancy (max == min), not a variance tolerance, decides "zero variance".
    constant = (np.maximum.reduceat(pred, starts) == np.minimum.reduceat(pred, starts)) | (
        np.maximum.reduceat(true, starts) == np.minimum.reduceat(true, starts)
    )
    usable = (sizes >= min_size) & ~constant
    if not usable.any():
        return float("nan")
    cov = np.add.reduceat(dp * dt, starts)[usable]
    var = np.add.reduceat(dp**2, starts)[usable] * np.add.reduceat(dt**2, starts)[usable]
    return float(np.median(cov / np.sqrt(var)))


# Genes with fewer held-out entries give too noisy a per-gene correlation to be counted.
MIN_HELDOUT_PER_GENE = 10


def heldout_scores(imputed: Any, truth_values: Any, rows: Any, cols: Any) -> dict[str, float]:
    """Scores on the held-out entries.

    Parameters
    ----------
    imputed
        Dense ``(n_cells, n_genes)`` imputation in lognorm space.
    truth_values
        1-D lognorm true values at the held-out coordinates, in the order of ``rows``/``cols``.
    rows, cols
        Integer coordinates of the held-out entries.

    Returns
    -------
    dict
        ``heldout_rmse``, ``heldout_pearson`` (over all held-out entries) and
        ``heldout_cell_pearson_median``: the median over cells of the Pearson r of each
        cell's held-out entries (cells with < 3 entries or a constant side are skipped;
        NaN if none is left); ``heldout_gene_pearson_median``: the same over genes, across
        cells, for genes with at least ``MIN_HELDOUT_PER_GENE`` held-out entries. Within one
        gene a per-gene average scores nothing: only a cell-specific estimate does.
    """
    imputed = _dense(imputed, "imputed")
    truth = np.asarray(truth_values, dtype=np.float64)
    rows, cols = np.asarray(rows), np.asarray(cols)
    if truth.ndim != 1 or rows.shape != truth.shape or cols.shape != truth.shape:
        raise ValueError(
            f"truth_values, rows and cols must be 1-D of one length, got {truth.shape}, {rows.shape}, {cols.shape}"
        )
    if truth.size < 2:
        raise ValueError(f"need at least 2 held-out entries to score, got {truth.size}; hold out more")
    if not (np.issubdtype(rows.dtype, np.integer) and np.issubdtype(cols.dtype, np.integer)):
        raise ValueError(f"rows and cols must be integer arrays, got {rows.dtype} and {cols.dtype}")
    n_cells, n_genes = imputed.shape
    if rows.min() < 0 or rows.max() >= n_cells or cols.min() < 0 or cols.max() >= n_genes:
        raise ValueError(f"rows/cols fall outside the imputed matrix of shape {imputed.shape}")
    if not np.all(np.isfinite(truth)):
        raise ValueError("truth_values contains NaN or infinite values")
    pred = imputed[rows, cols]
    return {
        "heldout_rmse": rmse(pred, truth),
        "heldout_pearson": pearson(pred, truth),
        "heldout_cell_pearson_median": _grouped_pearson_median(pred, truth, rows),
        "heldout_gene_pearson_median": _grouped_pearson_median(pred, truth, cols, MIN_HELDOUT_PER_GENE),
    }
