"""Scores on the held-out entries: pooled, per cell and per gene."""

from __future__ import annotations

from typing import Any

import numpy as np

from scgapfill.eval.metrics._common import _dense, pearson, rmse


def _grouped_pearson_median(pred: np.ndarray, true: np.ndarray, rows: np.ndarray, min_size: int = 3,
                            covariate: np.ndarray | None = None, explained_is_zero: bool = False) -> float:
    """Median over groups (cells, or genes) of the Pearson r of that group's held-out entries;
    groups with fewer than ``min_size`` entries or a constant side are skipped.

    With ``covariate`` (one value per entry, or one column per covariate), the partial r given it:
    both sides lose their least-squares fit on the covariates within the group before they are
    correlated. A prediction the covariates explain entirely is skipped, or with
    ``explained_is_zero`` scores r = 0 (it knows nothing beyond them).
    """
    order = np.argsort(rows, kind="stable")
    rows, pred, true = rows[order], pred[order], true[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    sizes = np.diff(np.r_[starts, rows.size])
    group = np.repeat(np.arange(starts.size), sizes)

    def centred(values: np.ndarray) -> np.ndarray:
        # Centring within each group first keeps the sums of products numerically stable.
        return values - (np.add.reduceat(values, starts, axis=0) / sizes.reshape((-1,) + (1,) * (values.ndim - 1)))[group]

    dp, dt = centred(pred), centred(true)
    # Exact constancy (max == min), not a variance tolerance, decides "zero variance".
    pred_constant = np.maximum.reduceat(pred, starts) == np.minimum.reduceat(pred, starts)
    true_constant = np.maximum.reduceat(true, starts) == np.minimum.reduceat(true, starts)
    if covariate is not None:
        dx = centred(np.asarray(covariate, dtype=np.float64)[order].reshape(rows.size, -1))
        # Per group, the normal equations of the covariates (a k x k system, k small); a covariate
        # constant within the group (or a copy of another) is dropped by the pseudo-inverse.
        xx = np.add.reduceat(dx[:, :, None] * dx[:, None, :], starts, axis=0)
        inverse = np.linalg.pinv(xx, rcond=1e-10, hermitian=True)
        raw = np.add.reduceat(dp**2, starts), np.add.reduceat(dt**2, starts)
        for d in (dp, dt):
            coef = np.einsum("gij,gj->gi", inverse, np.add.reduceat(d[:, None] * dx, starts, axis=0))
            d -= np.einsum("ni,ni->n", coef[group], dx)
        # A side the covariates explain entirely leaves only rounding noise to correlate.
        pred_constant |= np.add.reduceat(dp**2, starts) <= 1e-12 * raw[0]
        true_constant |= np.add.reduceat(dt**2, starts) <= 1e-12 * raw[1]
    sized = (sizes >= min_size) & ~true_constant
    usable = sized & ~pred_constant
    cov = np.add.reduceat(dp * dt, starts)
    var = np.add.reduceat(dp**2, starts) * np.add.reduceat(dt**2, starts)
    r = np.divide(cov, np.sqrt(var), out=np.zeros_like(cov), where=usable)
    counted = sized if explained_is_zero else usable
    if not counted.any():
        return float("nan")
    return float(np.median(r[counted]))


# Genes with fewer held-out entries give too noisy a per-gene correlation to be counted.
MIN_HELDOUT_PER_GENE = 10


def depth_floor(masked_counts: Any, rows: Any, cols: Any) -> np.ndarray:
    """The ``gene_depth`` filler's estimate at the held-out entries: the value a nonzero count of the
    gene takes, on average, at the cell's depth, knowing each gene's share of all counts and each
    cell's total and nothing of cell types (the floor of the held-out scores)."""
    from scgapfill.eval.baselines.simple import expected_nonzero_lognorm
    from scgapfill.data.normalization import check_counts

    matrix = check_counts(masked_counts)
    library = np.maximum(np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel(), 1.0)
    share = np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel() / library.sum()
    rows, cols = np.asarray(rows), np.asarray(cols)
    return expected_nonzero_lognorm(share[cols] * library[rows], library[rows])


def heldout_scores(imputed: Any, truth_values: Any, rows: Any, cols: Any, library: Any = None,
                   floor: Any = None) -> dict[str, float]:
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
    floor
        Optional: :func:`depth_floor` at the held-out entries (needs ``library``).

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
        With ``floor`` too, ``heldout_gene_pearson_beyond_floor``: the partial r given both the log
        library and the floor's own estimate, a prediction they explain entirely scoring 0, so
        ``gene_depth`` scores 0 by construction (docs/evaluation.md, "What decides", 4).
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
        if floor is not None:
            floor = np.asarray(floor, dtype=np.float64).ravel()
            if floor.shape != truth.shape:
                raise ValueError(f"floor must hold one value per held-out entry ({truth.size}), got {floor.shape}")
            scores["heldout_gene_pearson_beyond_floor"] = _grouped_pearson_median(
                pred, truth, cols, MIN_HELDOUT_PER_GENE, covariate=np.column_stack([depth, floor]),
                explained_is_zero=True)
    elif floor is not None:
        raise ValueError("floor needs library: the partial r beyond the floor is also given the depth")
    return scores
