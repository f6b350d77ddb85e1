"""The cell graph: PCA on the (sparse) counts, k nearest neighbours, the random walk on them.

One module for every caller: the model's neighbour-context channel and output smoothing, the kNN
baseline, the clustering metrics and the UMAP plots.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def neighbour_context(
    lognorm: Any, k: int = 15, n_pcs: int = 30, seed: int = 0, steps: int = 1, space: str = "log"
) -> np.ndarray:
    """Mean log-normalised profile of each cell's ``k`` nearest neighbours, the cell itself excluded.

    Parameters
    ----------
    lognorm
        Cells x genes log-normalised values of the matrix the model may see
        (held-out entries already zero). Sparse or dense.
    k
        Neighbours per cell; reduced to ``n_cells - 1`` for tiny inputs.
    n_pcs
        PCA components used to find neighbours; reduced to fit the matrix.
    seed
        Seed of the PCA solver.
    steps
        Random-walk steps on the kNN graph (MAGIC-like diffusion). ``1`` is the plain
        neighbour mean; for more steps the walks that return to the cell are removed
        and the rows renormalised, so the cell's own values still never come back.
    space
        ``"log"`` averages the log-normalised values; ``"counts"`` averages the normalised
        counts ``expm1(lognorm)`` and takes ``log1p`` of the mean (see :func:`walk_mean`).

    Returns
    -------
    numpy.ndarray
        float32, ``(n_cells, n_genes)``.

    Notes
    -----
    Excluding the cell itself matters: during training some of its entries are
    hidden, and its own value must not come back through the context channel.
    """
    X = sp.csr_matrix(lognorm, dtype=np.float64)
    return walk_mean(neighbour_walk(X, k, n_pcs, seed, steps), context_source(X, space), space)


def _check_space(space: str) -> None:
    if space not in ("log", "counts"):
        raise ValueError(f"model.context_space must be 'log' or 'counts', got {space!r}")


def context_source(lognorm: Any, space: str = "log") -> sp.csr_matrix:
    """The matrix the neighbour walk averages: ``lognorm`` itself (``"log"``) or ``expm1(lognorm)``,
    the counts per 1e4 (``"counts"``). Computed once, then averaged chunk by chunk by :func:`walk_mean`."""
    _check_space(space)
    X = sp.csr_matrix(lognorm, dtype=np.float64)
    if space == "counts":
        X = X.copy()
        X.data = np.expm1(X.data)
    return X


def walk_mean(walk: sp.spmatrix, source: sp.csr_matrix, space: str = "log") -> np.ndarray:
    """Context rows ``walk @ source`` in log-normalised space, dense float32.

    ``source`` comes from :func:`context_source` with the same ``space``. For ``"counts"`` the
    result is the log1p of the neighbours' mean count per 1e4: the log of their expression level,
    which is what a count model estimates, rather than the mean of their logs, which sinks
    wherever zeros are common.
    """
    _check_space(space)
    context = walk @ source
    context = np.asarray(context.toarray() if sp.issparse(context) else context, dtype=np.float64)
    if space == "counts":
        context = np.log1p(context)
    return context.astype(np.float32)


def neighbour_walk(lognorm: Any, k: int = 15, n_pcs: int = 30, seed: int = 0, steps: int = 1) -> sp.csr_matrix:
    """Row-stochastic ``(n_cells, n_cells)`` matrix of :func:`neighbour_context` (zero diagonal).

    Same parameters as :func:`neighbour_context`; ``walk @ values`` is the context of ``values``.
    """
    _check_steps(steps)  # before the PCA: a wrong value fails before any work
    return diffuse(neighbour_graph(lognorm, k, n_pcs, seed), steps)


def neighbour_graph(lognorm: Any, k: int = 15, n_pcs: int = 30, seed: int = 0) -> sp.csr_matrix:
    """The one-step walk: weight ``1/k`` on each of a cell's ``k`` nearest neighbours in PCA space,
    the cell itself excluded (zero diagonal). Parameters as in :func:`neighbour_context`."""
    _check_k(k)
    return knn_graph(pca_embedding(lognorm, n_pcs, seed)[0], k)


def pca_embedding(lognorm: Any, n_pcs: int = 30, seed: int = 0) -> tuple[np.ndarray, Any]:
    """Cells in ``n_pcs`` PCA components (capped to fit the matrix), and the fitted PCA (``None``
    where the matrix is too small for one: the embedding is then the matrix itself)."""
    from sklearn.decomposition import PCA

    n_cells, n_genes = lognorm.shape
    if n_cells < 2:
        raise ValueError(
            f"the neighbour context needs at least 2 cells, got {n_cells}; set model.context_channel=false"
        )
    if n_pcs < 1:
        raise ValueError(f"model.context_n_pcs must be >= 1, got {n_pcs}")
    X = sp.csr_matrix(lognorm, dtype=np.float64)
    n_components = min(n_pcs, min(n_cells, n_genes) - 1)
    if n_components < 1:
        return X.toarray(), None
    pca = PCA(n_components, svd_solver="arpack", random_state=seed)
    return pca.fit_transform(X), pca


def knn_graph(embedding: np.ndarray, k: int) -> sp.csr_matrix:
    """Weight ``1/k`` on each cell's ``k`` nearest neighbours in ``embedding``, itself excluded."""
    from sklearn.neighbors import NearestNeighbors

    _check_k(k)
    n_cells = embedding.shape[0]
    k = min(k, n_cells - 1)
    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(embedding).kneighbors(embedding)
    rows = np.arange(n_cells)
    # Duplicate cells can push the cell itself out of first place: drop it wherever it is,
    # and drop the farthest neighbour where it does not appear at all.
    is_self = neighbours == rows[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    picked = neighbours[~is_self].reshape(n_cells, k)
    return sp.csr_matrix(
        (np.full(n_cells * k, 1.0 / k), (np.repeat(rows, k), picked.ravel())), shape=(n_cells, n_cells)
    )


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"model.context_k must be >= 1, got {k}")


def _check_steps(steps: int) -> None:
    if steps < 1:
        raise ValueError(f"model.context_steps must be >= 1, got {steps}")


def diffuse(weights: sp.csr_matrix, steps: int) -> sp.csr_matrix:
    """``steps`` random-walk steps on ``weights`` with the walks that return to their cell removed
    and the rows renormalised, so a cell's own values never come back to it."""
    _check_steps(steps)
    walk = weights
    for _ in range(steps - 1):
        walk = walk @ weights
        walk.setdiag(0.0)
        walk.eliminate_zeros()
        walk = sp.csr_matrix(sp.diags(1.0 / np.asarray(walk.sum(axis=1)).ravel()) @ walk)
    return sp.csr_matrix(walk)
