"""Scores on the held-out entries: pooled, per cell and per gene."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import _dense, pearson, rmse


def _grouped_pearson_median(pred: np.ndarray, true: np.ndarray, rows: np.ndarray, min_size: int = 3,
                            covariate: np.ndarray | None = None) -> float:
    """Median over groups (cells, or genes) of the Pearson r of that group's held-out entries;
    groups with fewer than ``min_size`` entries or a constant side are skipped.

    With ``covariate``, the partial r given it: both sides lose their least-squares line in the
    covariate within the group before they are correlated.
    """
    order = np.argsort(rows, kind="stable")
    rows, pred, true = rows[order], pred[order], true[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    sizes = np.diff(np.r_[starts, rows.size])
    group = np.repeat(np.arange(starts.size), sizes)

    def centred(values: np.ndarray) -> np.ndarray:
        # Centring within each group first keeps the sums of products numerically stable.
        return values - (np.add.reduceat(values, starts) / sizes)[group]

    dp, dt = centred(pred), centred(true)
    # Exact constancy (max == min), not a variance tolerance, decides "zero variance".
    constant = (np.maximum.reduceat(pred, starts) == np.minimum.reduceat(pred, starts)) | (
        np.maximum.reduceat(true, starts) == np.minimum.reduceat(true, starts)
    )
    if covariate is not None:
        dx = centred(np.asarray(covariate, dtype=np.float64)[order])
        xx = np.add.reduceat(dx**2, starts)
        raw = np.add.reduceat(dp**2, starts), np.add.reduceat(dt**2, starts)
        for d in (dp, dt):
            slope = np.divide(np.add.reduceat(d * dx, starts), xx, out=np.zeros_like(xx), where=xx > 0)
            d -= slope[group] * dx
        # A side the covariate explains entirely leaves only rounding noise to correlate.
        constant |= (np.add.reduceat(dp**2, starts) <= 1e-12 * raw[0]) | (
            np.add.reduceat(dt**2, starts) <= 1e-12 * raw[1])
    usable = (sizes >= min_size) & ~constant
    if not usable.any():
        return float("nan")
    cov = np.add.reduceat(dp * dt, starts)[usable]
    var = np.add.reduceat(dp**2, starts)[usable] * np.add.reduceat(dt**2, starts)[usable]
    return float(np.median(cov / np.sqrt(var)))


# Genes with fewer held-out entries give too noisy a per-gene correlation to be counted.
MIN_HELDOUT_PER_GENE = 10


def heldout_scores(imputed: Any, truth_values: Any, rows: Any, cols: Any, library: Any = None) -> dict[str, float]:
    """Scores on the held-out entries.

    Parameters
    ----------
    imputed
        Dense ``(n_cells, n_genes)`` imputation in lognorm space.
    truth_values
        1-D lognorm true values at the held-out coordinates, in the order of ``rows``/``cols``.
    rows, cols
        Integer coordinates of the held-out entries.
    library
        Optional ``(n_cells,)`` total counts of the cells as the methods saw them (the masked counts).

    Returns
    -------
    dict
        ``heldout_rmse``, ``heldout_pearson`` (over all held-out entries) and
        ``heldout_cell_pearson_median``: the median over cells of the Pearson r of each
        cell's held-out entries (cells with < 3 entries or a constant side are skipped;
        NaN if none is left); ``heldout_gene_pearson_median``: the same over genes, across
        cells, for genes with at least ``MIN_HELDOUT_PER_GENE`` held-out entries. Within one
        gene a per-gene average scores nothing. With ``library``, also
        ``heldout_gene_pearson_given_depth``: the same median of partial r given the cell's log
        library. A held-out entry is a nonzero count, and one count weighs more in a shallow cell:
        within a gene the true values fall with depth, so a filler that knows only each gene's
        level and each cell's depth scores high on the plain per-gene r (the ``gene_depth``
        baseline) and about 0 on this one. Only an estimate of which cell expresses what scores here.
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
    scores = {
        "heldout_rmse": rmse(pred, truth),
        "heldout_pearson": pearson(pred, truth),
        "heldout_cell_pearson_median": _grouped_pearson_median(pred, truth, rows),
        "heldout_gene_pearson_median": _grouped_pearson_median(pred, truth, cols, MIN_HELDOUT_PER_GENE),
    }
    if library is not None:
        library = np.asarray(library, dtype=np.float64).ravel()
        if library.shape != (n_cells,) or not np.all(library >= 0):
            raise ValueError(f"library must hold one total >= 0 per cell ({n_cells}), got shape {library.shape}")
        # A cell whose every count was held out saw nothing: it counts as the shallowest, one count.
        depth = np.log(np.maximum(library, 1.0))[rows]
        scores["heldout_gene_pearson_given_depth"] = _grouped_pearson_median(
            pred, truth, cols, MIN_HELDOUT_PER_GENE, covariate=depth)
    return scores
