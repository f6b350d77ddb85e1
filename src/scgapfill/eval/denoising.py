"""The field's denoising benchmark: OpenProblems' molecular cross-validation, and a downsampling truth.

Two ways to split one count matrix, and the scores OpenProblems v2 computes on them
(docs/evaluation.md, "What decides"):

* :func:`split_molecules`: each count split binomially, train 0.9 / test 0.1 (Batson et al. 2019).
  A method denoises ``train``; ``test`` scores it.
* :func:`split_downsampled`: a fifth of each cell's molecules given (binomial 0.2), the other four
  fifths kept as the deep truth: what a method recovers of a profile it saw at a fifth of its depth.

:func:`denoising_scores` scores a denoised matrix over **every** entry it carries:

* ``mse``: mean squared error between ``log1p(normalize_total(test, 1e4))`` and
  ``log1p(normalize_total(denoised, 1e4))``;
* ``poisson``: ``mean(pred - y * log(pred + 1e-6))`` with ``y`` the test counts and ``pred`` the
  denoised profile at the cell's train depth times ``test.sum() / train.sum()``: the model first,
  the data second (OpenProblems' published runs swapped the two, which rewards doing nothing).

A method's output is read as the package's methods return it: ``log1p`` of per-1e4 levels, each
cell's profile being its ``expm1`` (any per-cell scale: only the composition is scored).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from scgapfill.data.masks import mcv_split
from scgapfill.data.normalization import check_counts
from scgapfill.eval.metrics._common import _lognorm_own_totals

TARGET_SUM = 1e4
TRAIN_FRACTION = 0.9
GIVEN_FRACTION = 0.2
# OpenProblems' offset inside the Poisson loss's log.
POISSON_EPS = 1e-6


@dataclass
class Split:
    """One split of a count matrix: what a method is given and what scores it."""

    train: sp.csr_matrix
    test: sp.csr_matrix
    kind: str  # "molecules" or "downsampled"
    seed: int


def split_molecules(counts: Any, seed: int, train_fraction: float = TRAIN_FRACTION) -> Split:
    """OpenProblems' split: each molecule to ``train`` with probability ``train_fraction``."""
    train, test = mcv_split(counts, train_fraction, seed)
    return Split(train, test, "molecules", seed)


def split_downsampled(counts: Any, seed: int, given_fraction: float = GIVEN_FRACTION) -> Split:
    """``given_fraction`` of each cell's molecules given to the method (``train``); the rest is the truth."""
    given, rest = mcv_split(counts, given_fraction, seed)
    return Split(given, rest, "downsampled", seed)


def _rows_lognorm(counts: np.ndarray) -> np.ndarray:
    """scanpy's ``normalize_total(target_sum=1e4)`` + ``log1p``: an all-zero row stays zero."""
    return _lognorm_own_totals(counts, TARGET_SUM)


def profile_of(denoised: Any) -> np.ndarray:
    """A method's output (``log1p`` of levels) as each cell's composition, float64, rows summing to 1
    (an all-zero row stays zero)."""
    values = denoised.toarray() if sp.issparse(denoised) else np.asarray(denoised)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or not np.all(np.isfinite(values)):
        raise ValueError("the denoised output must be a finite cells x genes matrix")
    if values.min() < 0:
        raise ValueError(f"the denoised output has negative values (min {values.min():.4g}); a level is >= 0")
    levels = np.expm1(values)
    totals = levels.sum(axis=1, keepdims=True)
    return levels * np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)


# Cells scored at a time: the dense float64 work of a block stays ~100 MB at 20k genes.
_BLOCK_CELLS = 512


def denoising_scores(denoised: Any, train: Any, test: Any) -> dict[str, float]:
    """OpenProblems' ``mse`` and ``poisson`` (model first) of ``denoised`` over every entry.

    Parameters
    ----------
    denoised
        The method's output on ``train``: ``log1p`` of levels, dense or sparse, cells x genes.
    train, test
        The split the method was given and the molecules it was not (same shape as ``denoised``).
    """
    train = check_counts(train, "train counts")
    test = check_counts(test, "test counts")
    if tuple(denoised.shape) != train.shape or train.shape != test.shape:
        raise ValueError(f"denoised {tuple(denoised.shape)}, train {train.shape} and test {test.shape} must match")
    if test.sum() <= 0:
        raise ValueError("the test counts are all zero; the split holds nothing to score")
    train_depth = np.asarray(train.sum(axis=1), dtype=np.float64)
    scale = test.sum() / train_depth.sum()
    squared = poisson = 0.0
    for begin in range(0, train.shape[0], _BLOCK_CELLS):
        rows = slice(begin, begin + _BLOCK_CELLS)
        profile = profile_of(denoised[rows])
        y = test[rows].toarray()
        squared += float(np.sum((_rows_lognorm(y) - np.log1p(TARGET_SUM * profile)) ** 2))
        pred = profile * train_depth[rows] * scale
        poisson += float(np.sum(pred - y * np.log(pred + POISSON_EPS)))
    n_entries = train.shape[0] * train.shape[1]
    return {"mse": squared / n_entries, "poisson": poisson / n_entries}


def per_gene_pearson(denoised: Any, truth_counts: Any, min_cells: int = 10) -> float:
    """Median over genes of the Pearson r, across cells, between the output and the deep truth
    (``log1p(normalize_total(truth))``); genes detected in fewer than ``min_cells`` cells of the truth,
    or constant on either side, are skipped."""
    pred = np.log1p(TARGET_SUM * profile_of(denoised))
    truth = check_counts(truth_counts, "truth counts").toarray()
    detected = (truth > 0).sum(axis=0) >= min_cells
    truth = _rows_lognorm(truth)[:, detected]
    pred = pred[:, detected]
    dp, dt = pred - pred.mean(axis=0), truth - truth.mean(axis=0)
    denom = np.sqrt((dp**2).sum(axis=0) * (dt**2).sum(axis=0))
    usable = denom > 0
    if not usable.any():
        return float("nan")
    return float(np.median((dp * dt).sum(axis=0)[usable] / denom[usable]))


def downsampled_ari(denoised: Any, truth_counts: Any, seed: int = 0, n_pcs: int = 50, n_neighbors: int = 15,
                    truth_clusters: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """ARI of the output's Leiden clusters against the deep truth's, as many clusters as the truth has
    at Leiden resolution 1 (a reference the method never saw). Returns the ARI and the truth's clusters
    (pass them back as ``truth_clusters`` to score the next method against the same ones)."""
    from sklearn.metrics import adjusted_rand_score

    from scgapfill.eval.metrics import cluster_labels
    from scgapfill.eval.metrics.clustering import _leiden
    from scgapfill.graph.cellgraph import scanpy_neighbours

    if truth_clusters is None:
        truth = _rows_lognorm(check_counts(truth_counts, "truth counts").toarray())
        truth_clusters = _leiden(scanpy_neighbours(truth, n_pcs, n_neighbors, seed), 1.0, seed)
    n_target = int(np.unique(truth_clusters).size)
    ours = cluster_labels(np.log1p(TARGET_SUM * profile_of(denoised)), n_target, seed=seed, n_pcs=n_pcs,
                          n_neighbors=n_neighbors)
    return float(adjusted_rand_score(truth_clusters, ours)), truth_clusters


Method = Callable[[sp.csr_matrix, list[str], int], np.ndarray]


def run_protocol(counts: Any, genes: list[str], methods: dict[str, Method], seeds: list[int],
                 kinds: tuple[str, ...] = ("molecules", "downsampled"),
                 on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Every method on every split: one row per split kind x seed x method.

    ``methods`` map a name to ``run(train_counts, genes, seed) -> denoised`` (``log1p`` of levels on
    every gene it was given). Each method sees only ``train``. Rows carry ``mse``, ``poisson``,
    ``mse_removed`` (the share of no denoising's MSE removed, when ``"none"`` is among the methods: it
    runs first), and on the downsampled split ``gene_pearson`` and ``ari`` against the deep truth.
    ``on_result`` is called with each row as it is made.
    """
    import time

    counts = check_counts(counts, "counts")
    order = sorted(methods, key=lambda name: name != "none")
    rows = []
    for kind in kinds:
        for seed in seeds:
            split = (split_molecules if kind == "molecules" else split_downsampled)(counts, seed)
            kept = np.asarray(split.train.sum(axis=1)).ravel() > 0
            train, test = split.train[kept], split.test[kept]
            truth_clusters, none_mse = None, float("nan")
            for name in order:
                start = time.perf_counter()
                # A method that reads more of each cell than its counts (knn_spatial: its position) is told
                # which of the given cells the split kept.
                cells = {"cells": np.flatnonzero(kept)} if getattr(methods[name], "takes_cells", False) else {}
                denoised = methods[name](train, genes, seed, **cells)
                row = {"split": kind, "seed": seed, "method": name, "seconds": time.perf_counter() - start,
                       "n_cells": int(train.shape[0]), "n_genes": int(train.shape[1]),
                       **denoising_scores(denoised, train, test)}
                none_mse = row["mse"] if name == "none" else none_mse
                row["mse_removed"] = 1.0 - row["mse"] / none_mse
                if kind == "downsampled":
                    row["gene_pearson"] = per_gene_pearson(denoised, test)
                    row["ari"], truth_clusters = downsampled_ari(denoised, test, seed, truth_clusters=truth_clusters)
                rows.append(row)
                if on_result is not None:
                    on_result(row)
    return rows
