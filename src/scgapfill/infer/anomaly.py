"""Cells the model cannot explain: a per-cell score of how badly it predicts counts hidden from it.

A tenth of each cell's nonzero entries on the model's genes are hidden, as training hides them; the
model imputes the cell from the rest and the hidden counts (and, on average, the zeros) are scored
against the imputed composition by their Poisson deviance. A cell's deviance grows with its
depth, so the score is the log deviance's residual after a line in log depth across the cells, as a
robust z-score (median and MAD): about 0 for a typical cell, and a cell at :data:`FLAG_MADS` or more is
flagged, the rule scater's ``isOutlier`` applies to QC metrics. What it finds and what it misses is
measured in ``docs/anomaly.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

HIDDEN_FRACTION = 0.1
FLAG_MADS = 3.0
# 1.4826 x MAD estimates the standard deviation of normally distributed values.
_MAD_TO_SD = 1.4826
SCORE_KEY = "gapfill_anomaly"
FLAG_KEY = "gapfill_anomaly_flag"


def depth_free_z(deviance: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """The log deviance's residual after a least-squares line in log depth, as a robust z-score.

    A cell without hidden counts (or a deviance of 0) scores 0: nothing was scored."""
    usable = (deviance > 0) & (depth > 0)
    z = np.zeros(deviance.shape)
    if usable.sum() < 3:
        return z
    x, y = np.log(depth[usable]), np.log(deviance[usable])
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    centre = np.median(residual)
    spread = _MAD_TO_SD * np.median(np.abs(residual - centre))
    z[usable] = (residual - centre) / (spread if spread > 0 else 1.0)
    return z


def hidden_deviance(hidden: sp.csr_matrix, share: np.ndarray, depth: np.ndarray, observed: sp.csr_matrix,
                    fraction: float) -> np.ndarray:
    """Per cell, the Poisson deviance of the hidden entries (``hidden``: their counts) against the expected
    counts ``share * depth``, and of ``fraction`` of the zero entries (each contributes ``2 * mu`` on average:
    a zero looks the same hidden or not)."""
    expected = share * depth[:, None]
    nonzero_mass = np.asarray(observed.astype(bool).multiply(expected).sum(axis=1)).ravel()
    zeros = expected.sum(axis=1) - nonzero_mass
    hidden_expected = np.asarray(hidden.astype(bool).multiply(expected).sum(axis=1)).ravel()
    y = hidden.data.astype(np.float64)
    coo = hidden.tocoo()
    term = np.zeros(hidden.shape[0])
    np.add.at(term, coo.row, y * np.log(y / np.maximum(expected[coo.row, coo.col], 1e-12)))
    return 2 * (term - np.asarray(hidden.sum(axis=1)).ravel() + hidden_expected + fraction * zeros)


def anomaly_scores(bundle: Any, counts: Any, seed: int = 0, hidden_fraction: float = HIDDEN_FRACTION,
                   positions: Any = None, params: Any = None) -> np.ndarray:
    """Each cell's anomaly score (a robust z, about 0 for a typical cell) for ``counts`` on the model's genes.

    ``counts`` are cells x ``bundle.gene_names`` raw counts
    (:func:`~scgapfill.infer.imputation.align_genes`). ``hidden_fraction`` of the nonzero entries are hidden
    (set to 0), as training hides them; the model imputes each cell from the rest (with ``params``, the
    :class:`~scgapfill.params.ImputeParams` the data are imputed with, by default the bundle's; every entry
    estimated), one chunk of cells at a time, and the hidden counts are scored
    against the cell's imputed composition at its depth (:func:`hidden_deviance`).
    """
    from scgapfill.data.masks import apply_mask, heldout_mask
    from scgapfill.infer.imputation import IN_MEMORY_CHUNK_CELLS, imputed_chunks

    counts = sp.csr_matrix(counts, dtype=np.float64)
    mask = heldout_mask(counts, hidden_fraction, seed)
    given = apply_mask(counts, mask)
    hidden = sp.csr_matrix(counts.multiply(mask.astype(bool)))
    hidden.eliminate_zeros()
    depth = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    params = (bundle.impute if params is None else params).model_copy(
        update={"form": "level", "scale": "observed_library", "fill_only_zeros": False})
    deviance = np.zeros(counts.shape[0])
    for rows, values in imputed_chunks(bundle, given, params, chunk_size=IN_MEMORY_CHUNK_CELLS, positions=positions):
        levels = np.expm1(values.astype(np.float64))
        totals = levels.sum(axis=1, keepdims=True)
        share = np.divide(levels, totals, out=np.zeros_like(levels), where=totals > 0)
        deviance[rows] = hidden_deviance(hidden[rows], share, depth[rows], counts[rows], hidden_fraction)
    return depth_free_z(deviance, depth)


def add_anomaly(obs: pd.DataFrame, scores: np.ndarray, kept: np.ndarray | None = None) -> None:
    """``obs[SCORE_KEY]`` and ``obs[FLAG_KEY]`` (score >= :data:`FLAG_MADS`) from ``scores`` of the ``kept``
    cells (``None``: every cell); a cell without a score (skipped, no counts) gets NaN and no flag."""
    full = np.full(len(obs), np.nan)
    if kept is None:
        full[:] = scores
    else:
        full[np.asarray(kept)] = scores
    obs[SCORE_KEY] = full.astype(np.float32)
    obs[FLAG_KEY] = np.nan_to_num(full, nan=-np.inf) >= FLAG_MADS
