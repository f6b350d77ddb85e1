"""Scores against a simulation's ground truth, and the false gene-gene correlations imputation makes."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from scgapfill.eval.metrics._common import _dense, _lognorm_own_totals, _same_shape, pearson, rmse

# Thresholds of false_corr_rate (see truth_scores).
INDEPENDENT_MAX_ABS_R = 0.1
FALSE_CORR_MIN_ABS_R = 0.3


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
