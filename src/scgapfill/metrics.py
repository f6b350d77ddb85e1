"""Scores of an imputation, all in the evaluation space ``log1p(counts / sf * 1e4)``.

* held-out entries: RMSE and Pearson against the hidden true values;
* molecular cross-validation (Batson et al. 2019), as in OpenProblems' denoising task;
* clustering before / after imputation against known labels (ARI);
* simulated data: distance to the true counts and true means, and the rate of
  gene-gene correlations that imputation invents.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np
import scipy.sparse as sp

from scgapfill.normalization import counts_from_lognorm, lognorm, size_factors

__all__ = [
    "heldout_scores",
    "mcv_scores",
    "cluster_labels",
    "clustering_scores",
    "truth_scores",
    "rmse",
    "pearson",
]

logger = logging.getLogger(__name__)

# Thresholds of false_corr_rate (see truth_scores).
INDEPENDENT_MAX_ABS_R = 0.1
FALSE_CORR_MIN_ABS_R = 0.3


def _dense(values: Any, name: str) -> np.ndarray:
    if sp.issparse(values):
        values = values.toarray()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D (cells x genes), got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or infinite values; fix the imputation before scoring")
    return values


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; they must match")


def rmse(pred: Any, true: Any) -> float:
    """Root mean squared error over all entries."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.size == 0:
        raise ValueError(f"rmse needs two non-empty arrays of one shape, got {pred.shape} and {true.shape}")
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def pearson(pred: Any, true: Any) -> float:
    """Pearson correlation over all entries; NaN when either side is constant."""
    pred = np.asarray(pred, dtype=np.float64).ravel()
    true = np.asarray(true, dtype=np.float64).ravel()
    if pred.shape != true.shape or pred.size < 2:
        raise ValueError(f"pearson needs two arrays of one size >= 2, got {pred.size} and {true.size}")
    dp, dt = pred - pred.mean(), true - true.mean()
    denom = np.sqrt(np.sum(dp**2) * np.sum(dt**2))
    return float(np.sum(dp * dt) / denom) if denom > 0 else float("nan")


# ----------------------------------------------------------------------------- held-out


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


# ----------------------------------------------------------------------------- MCV


def _lognorm_own_totals(counts: np.ndarray, target_sum: float) -> np.ndarray:
    """scanpy's normalize_total + log1p: each row scaled to ``target_sum``; all-zero rows stay 0."""
    totals = counts.sum(axis=1)
    return lognorm(counts, np.where(totals > 0, totals, 1.0), target_sum)


def mcv_scores(
    denoised_lognorm: Any, train_counts: Any, test_counts: Any, target_sum: float = 1e4
) -> dict[str, float]:
    """Molecular cross-validation scores (Batson et al. 2019), as in OpenProblems' denoising.

    The denoised lognorm matrix is mapped back to counts with the train size factors.

    * ``mcv_mse``: mean squared error between ``log1p(normalize_total(test))`` and
      ``log1p(normalize_total(denoised counts))``, both scaled to ``target_sum`` per
      cell by their own totals; cells with no test counts are skipped.
    * ``mcv_poisson``: mean over entries of ``pred - y * log(pred + 1e-6)`` with
      ``y`` the test counts and ``pred`` the denoised counts times
      ``test.sum() / train.sum()`` (one global scale). Unlike OpenProblems v1, whose call
      swapped the two arguments, ``pred`` here is the model and ``y`` the data.

    Parameters
    ----------
    denoised_lognorm
        ``(n_cells, n_genes)`` output of a method run on ``train_counts``; must be >= 0.
    train_counts, test_counts
        The MCV split of the counts (same shape).
    target_sum
        Per-cell total of the normalisation.
    """
    denoised = _dense(denoised_lognorm, "denoised_lognorm")
    if denoised.min() < 0:
        raise ValueError(
            f"denoised_lognorm has negative values (min {denoised.min():.4g}); counts would be negative, "
            "clip the output at 0 first"
        )
    train_sf = size_factors(train_counts)
    test = _dense(test_counts, "test_counts")
    _same_shape(denoised, test, "denoised_lognorm", "test_counts")
    if tuple(train_counts.shape) != denoised.shape:
        raise ValueError(
            f"denoised_lognorm has shape {denoised.shape} but train_counts {tuple(train_counts.shape)}; they must match"
        )
    if test.min() < 0:
        raise ValueError("test_counts has negative values; give the raw MCV test counts")
    if test.sum() <= 0:
        raise ValueError("test_counts is all zero; raise the MCV test fraction")
    denoised_counts = counts_from_lognorm(denoised, train_sf, target_sum)

    keep = test.sum(axis=1) > 0
    mse = np.mean(
        (_lognorm_own_totals(test[keep], target_sum) - _lognorm_own_totals(denoised_counts[keep], target_sum)) ** 2
    )
    pred = denoised_counts * (test.sum() / train_sf.sum())
    poisson = np.mean(pred - test * np.log(pred + 1e-6))
    return {"mcv_mse": float(mse), "mcv_poisson": float(poisson)}


# ----------------------------------------------------------------------------- clustering


def _leiden(adata: Any, resolution: float, seed: int) -> np.ndarray:
    import scanpy as sc

    sc.tl.leiden(
        adata,
        resolution=resolution,
        flavor="igraph",
        n_iterations=2,
        directed=False,
        random_state=seed,
        key_added="_leiden",
    )
    return np.asarray(adata.obs["_leiden"].astype(str), dtype=str)


def cluster_labels(
    X_lognorm: Any,
    n_target: int,
    seed: int = 0,
    n_pcs: int = 50,
    n_neighbors: int = 15,
    resolution_range: tuple[float, float] = (0.05, 3.0),
    max_tries: int = 12,
) -> np.ndarray:
    """Leiden clusters whose number is closest to ``n_target``.

    PCA (``n_pcs`` capped at ``min(shape) - 1``), a ``n_neighbors`` graph, then Leiden
    (igraph, 2 iterations) at resolutions bisected over ``resolution_range``, which is
    widened (lower bound / 4, upper bound * 2) while the target lies outside it; at most
    ``max_tries`` Leiden runs in all, as the cluster count grows with resolution. The run
    whose count is closest to ``n_target`` wins. Deterministic for a seed.

    Parameters
    ----------
    X_lognorm
        Cells x genes lognorm matrix, dense or sparse; at least 3 cells and 2 genes.
    n_target
        Wanted number of clusters, e.g. the number of known cell types.

    Returns
    -------
    numpy.ndarray
        One cluster label (str) per cell.
    """
    if sp.issparse(X_lognorm):
        shape = X_lognorm.shape
    else:
        X_lognorm = _dense(X_lognorm, "X_lognorm")
        shape = X_lognorm.shape
    if len(shape) != 2 or shape[0] < 3 or shape[1] < 2:
        raise ValueError(f"clustering needs at least 3 cells and 2 genes, got shape {shape}")
    if isinstance(n_target, bool) or not isinstance(n_target, (int, np.integer)) or not 1 <= n_target <= shape[0]:
        raise ValueError(f"n_target must be an integer in [1, n_cells={shape[0]}], got {n_target!r}")
    low, high = resolution_range
    if not 0 < low < high:
        raise ValueError(f"resolution_range must be (low, high) with 0 < low < high, got {resolution_range}")
    if max_tries < 2:
        raise ValueError(f"max_tries must be >= 2 (both ends of the range), got {max_tries}")
    from .cellgraph import scanpy_neighbours

    adata = scanpy_neighbours(X_lognorm, n_pcs, n_neighbors, seed)

    tried: list[tuple[int, float, np.ndarray]] = []

    def run(resolution: float) -> int:
        labels = _leiden(adata, resolution, seed)
        n_found = int(np.unique(labels).size)
        tried.append((abs(n_found - n_target), resolution, labels))
        return n_found

    n_low, n_high = run(low), run(high)
    # Widen the range while the target lies outside it (still within max_tries).
    while n_low > n_target and len(tried) < max_tries:
        high, n_high = low, n_low
        low /= 4
        n_low = run(low)
    while n_high < n_target and len(tried) < max_tries:
        low, n_low = high, n_high
        high *= 2
        n_high = run(high)
    if n_low < n_target < n_high:
        while len(tried) < max_tries:
            mid = 0.5 * (low + high)
            n_mid = run(mid)
            if n_mid == n_target:
                break
            low, high = (mid, high) if n_mid < n_target else (low, mid)
    # Closest count first, then the lowest resolution among ties (the coarsest split).
    return min(tried, key=lambda item: (item[0], item[1]))[2]


def clustering_scores(
    before_lognorm: Any,
    after_lognorm: Any,
    labels: Any,
    seed: int = 0,
    n_pcs: int = 50,
    n_neighbors: int = 15,
    clusters_before: Any = None,
) -> tuple[dict[str, float], np.ndarray, np.ndarray] | None:
    """Agreement of Leiden clusters with known labels, before and after imputation.

    Both matrices are clustered with :func:`cluster_labels` aiming at the number of
    distinct labels.

    Parameters
    ----------
    before_lognorm, after_lognorm
        Cells x genes lognorm matrices: the input of the method and its output
        (``before_lognorm`` may be ``None`` when ``clusters_before`` is given).
    labels
        Known cell labels, one per cell, or ``None``.
    seed, n_pcs, n_neighbors
        Passed to :func:`cluster_labels` for both matrices.
    clusters_before
        The clustering of ``before_lognorm`` if already computed with the same settings
        (every method of a benchmark shares one input), else ``None``.

    Returns
    -------
    tuple or None
        ``(scores, clusters_before, clusters_after)`` with scores ``ari_before``,
        ``ari_after``, ``ari_before_after``, ``n_clusters_before``, ``n_clusters_after``;
        ``None`` (with a warning logged) when ``labels`` is None.
    """
    from sklearn.metrics import adjusted_rand_score

    if labels is None:
        logger.warning("no cell labels in this dataset; clustering scores are skipped")
        return None
    after_lognorm = after_lognorm if sp.issparse(after_lognorm) else _dense(after_lognorm, "after_lognorm")
    labels = np.asarray(labels).astype(str)
    if labels.ndim != 1 or labels.size != after_lognorm.shape[0]:
        raise ValueError(
            f"labels must be 1-D with one entry per cell ({after_lognorm.shape[0]}), got shape {labels.shape}"
        )
    if clusters_before is not None:
        clusters_before = np.asarray(clusters_before).astype(str)
        if clusters_before.shape != labels.shape:
            raise ValueError(
                f"clusters_before has shape {clusters_before.shape}, expected one cluster per cell ({labels.size})"
            )
    elif before_lognorm is None:
        raise ValueError("clustering_scores needs before_lognorm or clusters_before")
    else:
        before_lognorm = before_lognorm if sp.issparse(before_lognorm) else _dense(before_lognorm, "before_lognorm")
        if before_lognorm.shape != after_lognorm.shape:
            raise ValueError(
                f"before_lognorm has shape {before_lognorm.shape} but after_lognorm {after_lognorm.shape}; "
                "they must match"
            )
    n_target = int(np.unique(labels).size)
    settings = {"seed": seed, "n_pcs": n_pcs, "n_neighbors": n_neighbors}
    before = cluster_labels(before_lognorm, n_target, **settings) if clusters_before is None else clusters_before
    after = cluster_labels(after_lognorm, n_target, **settings)
    scores = {
        "ari_before": float(adjusted_rand_score(labels, before)),
        "ari_after": float(adjusted_rand_score(labels, after)),
        "ari_before_after": float(adjusted_rand_score(before, after)),
        "n_clusters_before": int(np.unique(before).size),
        "n_clusters_after": int(np.unique(after).size),
    }
    return scores, before, after


# ----------------------------------------------------------------------------- simulation truth


def _gene_correlations(values: np.ndarray) -> np.ndarray:
    """Gene-gene Pearson matrix; a constant gene correlates 0 with everything (not NaN)."""
    centred = values - values.mean(axis=0)
    norms = np.sqrt(np.sum(centred**2, axis=0))
    scaled = np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)
    return np.clip(scaled.T @ scaled, -1.0, 1.0)


def _false_corr_rate(imputed: np.ndarray, truth_lognorm_mean: np.ndarray, max_genes: int, seed: int) -> float:
    """Fraction of truly independent gene pairs that the imputation makes correlated.

    On at most ``max_genes`` genes (a seeded random subset of the genes that vary in
    ``imputed``), a pair is independent when ``|r| <= 0.1`` in the true mean, and falsely
    correlated when also ``|r| > 0.3`` in ``imputed``; a constant gene has ``r = 0``.
    NaN when fewer than 2 genes vary or no pair is independent.
    """
    varying = np.flatnonzero(imputed.max(axis=0) > imputed.min(axis=0))
    if varying.size < 2:
        return float("nan")
    if varying.size > max_genes:
        varying = np.sort(np.random.default_rng(seed).choice(varying, size=max_genes, replace=False))
    r_true = _gene_correlations(truth_lognorm_mean[:, varying])
    r_imputed = _gene_correlations(imputed[:, varying])
    upper = np.triu_indices(varying.size, k=1)
    independent = np.abs(r_true[upper]) <= INDEPENDENT_MAX_ABS_R
    if not independent.any():
        return float("nan")
    return float(np.mean(np.abs(r_imputed[upper][independent]) > FALSE_CORR_MIN_ABS_R))


def truth_scores(
    imputed: Any,
    truth_counts: Any,
    truth_mean: Any,
    max_genes_corr: int = 500,
    seed: int = 0,
    heldout: Optional[tuple[Any, Any]] = None,
) -> dict[str, float]:
    """Scores against a simulation's ground truth.

    Parameters
    ----------
    imputed
        Dense ``(n_cells, n_genes)`` imputation in lognorm space.
    truth_counts
        The simulated counts before dropout/masking (count scale).
    truth_mean
        The noise-free gamma-Poisson mean (count scale).
    max_genes_corr
        Genes used by ``false_corr_rate``.
    seed
        Seed of that gene subset.
    heldout
        ``(rows, cols)`` of the held-out entries: adds ``heldout_truth_mean_pearson``.

    Returns
    -------
    dict
        ``truth_rmse``, ``truth_pearson`` (every entry vs ``lognorm(truth_counts)``),
        ``truth_mean_rmse``, ``truth_mean_pearson`` (vs ``lognorm(truth_mean)``), where each truth
        is a composition, ``lognorm(x) = log1p(1e4 * x / sum(x))`` of its own cell: an output that
        fills zeros without renormalising its cell is scored as the mis-scaled profile it is; and
        ``false_corr_rate``, the share of independent gene pairs that imputation makes
        correlated. Rule: take the genes that vary in ``imputed`` (at most
        ``max_genes_corr``, a random subset drawn with ``seed``); a pair is independent
        when its Pearson ``|r| <= 0.1`` in ``lognorm(truth_mean)`` and falsely correlated
        when also ``|r| > 0.3`` in ``imputed``; a constant gene (NaN r) counts as ``r = 0``.
        NaN when fewer than 2 genes vary or no pair is independent.
        ``heldout_truth_mean_pearson``: Pearson with ``lognorm(truth_mean)`` over the held-out
        entries only. The held-out score compares the same entries with one noisy, nonzero draw;
        this one asks how well a method recovers their expression level.
    """
    imputed = _dense(imputed, "imputed")
    truth = _lognorm_own_totals(_dense(truth_counts, "truth_counts"), 1e4)
    mean = _lognorm_own_totals(_dense(truth_mean, "truth_mean"), 1e4)
    _same_shape(imputed, truth, "imputed", "truth_counts")
    _same_shape(imputed, mean, "imputed", "truth_mean")
    if isinstance(max_genes_corr, bool) or not isinstance(max_genes_corr, (int, np.integer)) or max_genes_corr < 2:
        raise ValueError(f"max_genes_corr must be an integer >= 2, got {max_genes_corr!r}")
    scores = {
        "truth_rmse": rmse(imputed, truth),
        "truth_pearson": pearson(imputed, truth),
        "truth_mean_rmse": rmse(imputed, mean),
        "truth_mean_pearson": pearson(imputed, mean),
        "false_corr_rate": _false_corr_rate(imputed, mean, max_genes_corr, seed),
    }
    if heldout is not None:
        rows, cols = heldout
        scores["heldout_truth_mean_pearson"] = pearson(imputed[rows, cols], mean[rows, cols])
    return scores
