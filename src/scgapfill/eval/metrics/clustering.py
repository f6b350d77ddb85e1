"""Leiden clusters before and after imputation against known labels (ARI)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from scgapfill.eval.metrics._common import _dense

logger = logging.getLogger(__name__)


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
    from scgapfill.graph.cellgraph import scanpy_neighbours

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
