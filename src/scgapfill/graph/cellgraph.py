"""The cell graph: PCA on the (sparse) counts, k nearest neighbours, the random walk on them.

One module for every caller: the model's neighbour-context channel and output smoothing, the kNN
baseline, the clustering metrics and the UMAP plots.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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
    return walk_mean(neighbour_walk(X, k, n_pcs, seed, steps)[:], context_source(X, space), space)


def _check_space(space: str) -> None:
    if space not in ("log", "counts"):
        raise ValueError(f"model.context_space must be 'log' or 'counts', got {space!r}")


def context_source(lognorm: Any, space: str = "log") -> sp.csr_matrix:
    """The matrix the neighbour walk averages: ``lognorm`` itself (``"log"``) or ``expm1(lognorm)``,
    the counts per 1e4 (``"counts"``). Computed once, then averaged chunk by chunk by :func:`walk_mean`."""
    _check_space(space)
    X = sp.csr_matrix(lognorm, dtype=np.float64)
    if space == "counts":
        # New values on the same sparsity pattern: the index arrays are shared, not copied.
        X = sp.csr_matrix((np.expm1(X.data), X.indices, X.indptr), shape=X.shape)
    return X


class CountsPerTarget:
    """``counts / size_factors[:, None] * target_sum``, the source of the ``"counts"`` context, never made.

    A walk averages it by weighting its own columns instead, ``(walk * scale) @ counts``: the
    context then needs no matrix of the data's size beyond the counts the caller already holds
    (at 100k cells the made source was ~270 MB of float64). The product runs in float32 whatever
    the counts' dtype, so a cell's context is the same for float32, float64 or integer counts (count
    values are exact in float32), and float32 counts are never copied; its sums of at most
    ``k**steps`` terms differ from the made source's in the last float32 digits.
    """

    def __init__(self, counts: sp.csr_matrix, size_factors: np.ndarray, target_sum: float = 1e4) -> None:
        if counts.dtype != np.float32:  # the values only: the index arrays are shared
            counts = sp.csr_matrix((counts.data.astype(np.float32), counts.indices, counts.indptr), shape=counts.shape)
        self.counts = counts
        self.scale = target_sum / np.asarray(size_factors, dtype=np.float64)

    def averaged(self, walk: sp.spmatrix) -> sp.csr_matrix:
        walk = sp.csr_matrix(walk)
        weights = (walk.data * self.scale[walk.indices]).astype(np.float32)
        return sp.csr_matrix((weights, walk.indices, walk.indptr), shape=walk.shape) @ self.counts


def walk_mean(walk: sp.spmatrix, source: Any, space: str = "log") -> np.ndarray:
    """Context rows ``walk @ source`` in log-normalised space, dense float32.

    ``source`` comes from :func:`context_source` with the same ``space``, or is a
    :class:`CountsPerTarget` (``"counts"`` only). For ``"counts"`` the
    result is the log1p of the neighbours' mean count per 1e4: the log of their expression level,
    which is what a count model estimates, rather than the mean of their logs, which sinks
    wherever zeros are common.
    """
    _check_space(space)
    if isinstance(source, CountsPerTarget):
        if space != "counts":
            raise ValueError("CountsPerTarget is the source of the 'counts' context only")
        context = source.averaged(walk)
    else:
        context = walk @ source
    context = np.asarray(context.toarray() if sp.issparse(context) else context, dtype=np.float64)
    if space == "counts":
        context = np.log1p(context)
    return context.astype(np.float32)


def neighbour_walk(lognorm: Any, k: int = 15, n_pcs: int = 30, seed: int = 0, steps: int = 1) -> "NeighbourWalk":
    """The row-stochastic ``(n_cells, n_cells)`` walk of :func:`neighbour_context` (zero diagonal),
    as a :class:`NeighbourWalk`: ``walk[cells]`` are those cells' rows, ``walk[:]`` the whole matrix.

    Same parameters as :func:`neighbour_context`; ``walk[:] @ values`` is the context of ``values``.
    """
    _check_steps(steps)  # before the PCA: a wrong value fails before any work
    return NeighbourWalk(neighbour_graph(lognorm, k, n_pcs, seed), steps)


def neighbour_graph(lognorm: Any, k: int = 15, n_pcs: int = 30, seed: int = 0) -> sp.csr_matrix:
    """The one-step walk: weight ``1/k`` on each of a cell's ``k`` nearest neighbours in PCA space,
    the cell itself excluded (zero diagonal). Parameters as in :func:`neighbour_context`."""
    return cell_graph(lognorm, k, n_pcs, seed).graph


@dataclass
class CellGraph:
    """:func:`neighbour_graph`'s graph with the fitted PCA it was found in, and what it was built from.

    ``key`` (:func:`graph_key`) names the counts and settings, so a caller holding the counts again
    can take the graph instead of building it: training builds it for its context, and imputing the
    same cells right after (``GapFill.fit`` then ``impute`` on one AnnData) needs the very same one.
    """

    pca: Any
    graph: sp.csr_matrix
    key: str = ""

    def matches(self, counts: sp.csr_matrix, k: int, n_pcs: int, seed: int) -> bool:
        """Whether this is the graph of ``counts`` for these settings (cheap checks first, then the hash)."""
        return self.graph.shape[0] == counts.shape[0] and self.key == graph_key(counts_digest(counts), k, n_pcs, seed)


def cell_graph(lognorm: Any, k: int = 15, n_pcs: int = 30, seed: int = 0, key: str = "") -> CellGraph:
    """The PCA of ``lognorm`` and the one-step walk in it (:func:`neighbour_graph`), as a :class:`CellGraph`."""
    _check_k(k)
    embedding, pca = pca_embedding(lognorm, n_pcs, seed)
    return CellGraph(pca, knn_graph(embedding, k, seed), key)


def counts_digest(counts: sp.csr_matrix) -> Any:
    """A blake2b hash of a CSR matrix's shape, sparsity pattern and values (as
    :func:`~scgapfill.train.data.as_counts_matrix` gives them): two matrices hash the same only when every
    entry is the same. Hashed once, then ``.copy()``-ed for each key made from it (:func:`graph_key`,
    :func:`~scgapfill.train.resume.run_fingerprint`)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(repr(counts.shape).encode())
    for array in (counts.indptr, counts.indices, counts.data):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest


def graph_key(digest: Any, k: int, n_pcs: int, seed: int) -> str:
    """The key of a :class:`CellGraph`: the counts' :func:`counts_digest` and the settings it is built with."""
    key = digest.copy()
    key.update(repr((k, n_pcs, seed)).encode())
    return key.hexdigest()


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


# Above this many cells the neighbours are searched approximately (pynndescent). Exact search
# costs O(n^2) distance evaluations; benchmarks/neighbours.py measured where the two cross and
# the approximate search's recall (docs/performance.md).
EXACT_MAX_CELLS = 50_000


def nearest_neighbours(
    embedding: np.ndarray, k: int, seed: int = 0, exact_max_cells: int = EXACT_MAX_CELLS, algorithm: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's ``k`` nearest other cells (itself excluded), nearest first: ``(indices, distances)``.

    Exact (scikit-learn, ``algorithm`` as in :class:`~sklearn.neighbors.NearestNeighbors`) up to
    ``exact_max_cells`` cells, approximate above (pynndescent's NN-descent, seeded, with UMAP's
    settings for the number of trees and iterations). ``k`` is capped at ``n_cells - 1``.
    """
    _check_k(k)
    embedding = np.asarray(embedding)
    n_cells = embedding.shape[0]
    if n_cells < 2:
        raise ValueError(f"a neighbour graph needs at least 2 cells, got {n_cells}")
    k = min(k, n_cells - 1)
    if n_cells <= exact_max_cells:
        from sklearn.neighbors import NearestNeighbors

        distances, neighbours = (
            NearestNeighbors(n_neighbors=k + 1, algorithm=algorithm).fit(embedding).kneighbors(embedding)
        )
    else:
        neighbours, distances = _nndescent(embedding, k + 1, seed).neighbor_graph
    return _without_own(neighbours, distances, np.arange(n_cells))


def _nndescent(embedding: np.ndarray, n_neighbors: int, seed: int) -> Any:
    """pynndescent's index, seeded, with UMAP's settings for the number of trees and iterations."""
    from pynndescent import NNDescent

    n_cells = embedding.shape[0]
    return NNDescent(
        embedding, n_neighbors=n_neighbors, random_state=seed, low_memory=True, verbose=False,
        n_trees=min(64, 5 + int(round(n_cells**0.5 / 20.0))), n_iters=max(5, int(round(np.log2(n_cells)))),
    )


def _without_own(neighbours: np.ndarray, distances: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``k + 1`` found per row less one: the row's own cell wherever it is (duplicate cells can push
    it out of first place), the farthest where it does not appear (or is -1: not among those searched)."""
    is_self = neighbours == own[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    n_rows, k = neighbours.shape[0], neighbours.shape[1] - 1
    return neighbours[keep].reshape(n_rows, k), distances[keep].reshape(n_rows, k)


class ReferenceIndex:
    """The ``k`` nearest cells of a fixed reference for any cells, in the reference's embedding.

    Where the graph cannot span every cell (chunked inference above ``inference.reference_cells``),
    each cell's neighbours are searched among the reference's, as a new cell is mapped onto an
    atlas: built once, queried one chunk at a time. Up to ``exact_max_cells`` reference cells the
    search is exact (scikit-learn, brute force: its cost grows with cells x reference), above it
    approximate (pynndescent, whose one-off compilation takes a minute or two on a CPU).
    """

    def __init__(self, embedding: np.ndarray, k: int, seed: int = 0, exact_max_cells: int = 5_000) -> None:
        _check_k(k)
        embedding = np.asarray(embedding)
        n_cells = embedding.shape[0]
        if n_cells < 2:
            raise ValueError(f"a reference needs at least 2 cells, got {n_cells}; raise inference.reference_cells")
        self.k = min(k, n_cells - 1)
        self.n_cells = n_cells
        if n_cells <= exact_max_cells:
            from sklearn.neighbors import NearestNeighbors

            self._exact = NearestNeighbors(n_neighbors=self.k + 1, algorithm="brute").fit(embedding)
        else:
            self._exact = None
            # More neighbours in the index than asked for: its search graph then finds the true ones more often.
            self._index = _nndescent(embedding, min(max(self.k + 1, 30), n_cells - 1), seed)
            self._index.prepare()

    def graph(self, embedding: np.ndarray, own: np.ndarray) -> sp.csr_matrix:
        """Weight ``1/k`` on each row's ``k`` nearest reference cells; ``own`` is the row's own place in the
        reference (-1 for a cell outside it), never its own neighbour."""
        embedding = np.asarray(embedding)
        if self._exact is not None:
            distances, neighbours = self._exact.kneighbors(embedding)
        else:
            neighbours, distances = self._index.query(embedding, k=self.k + 1)
        neighbours, _ = _without_own(neighbours, distances, np.asarray(own))
        n_rows = neighbours.shape[0]
        return sp.csr_matrix(
            (np.full(n_rows * self.k, 1.0 / self.k), neighbours.ravel(), np.arange(0, n_rows * self.k + 1, self.k)),
            shape=(n_rows, self.n_cells),
        )


def knn_graph(embedding: np.ndarray, k: int, seed: int = 0) -> sp.csr_matrix:
    """Weight ``1/k`` on each cell's ``k`` nearest neighbours in ``embedding``, itself excluded."""
    neighbours, _ = nearest_neighbours(embedding, k, seed)
    n_cells, k = neighbours.shape
    return sp.csr_matrix(
        (np.full(n_cells * k, 1.0 / k), (np.repeat(np.arange(n_cells), k), neighbours.ravel())),
        shape=(n_cells, n_cells),
    )


class NeighboursTransformer:
    """The project's neighbour search as a scikit-learn style KNN transformer for scanpy.

    ``sc.pp.neighbors(adata, transformer=NeighboursTransformer(15))`` then gives the same graph at
    every size: scanpy's own choice switches to pynndescent above 4,096 cells, whose sparse *array*
    result scanpy 1.11 cannot read (``'csr_array' object has no attribute 'getnnz'``). The result is
    a ``scipy.sparse.csr_matrix`` of distances, each row the cell itself (distance 0) and then its
    ``n_neighbors - 1`` nearest neighbours, nearest first, as scanpy's exact path builds it.
    """

    def __init__(self, n_neighbors: int = 15, seed: int = 0, exact_max_cells: int = EXACT_MAX_CELLS) -> None:
        self.n_neighbors = n_neighbors
        self.seed = seed
        self.exact_max_cells = exact_max_cells

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"n_neighbors": self.n_neighbors, "seed": self.seed, "exact_max_cells": self.exact_max_cells}

    def fit(self, X: Any, y: Any = None) -> "NeighboursTransformer":
        return self

    def transform(self, X: Any) -> sp.csr_matrix:
        """The neighbours of the cells of ``X`` among themselves (scanpy calls ``fit_transform``)."""
        X = np.asarray(X)
        n_cells = X.shape[0]
        # Brute force, as scanpy's exact path: the same neighbours and distances, so the same graph.
        others, distances = nearest_neighbours(X, self.n_neighbors - 1, self.seed, self.exact_max_cells, "brute")
        k = others.shape[1] + 1
        indices = np.hstack([np.arange(n_cells)[:, None], others]).ravel()
        data = np.hstack([np.zeros((n_cells, 1)), distances]).ravel()
        # Built from (data, indices, indptr) so each row keeps nearest-first order, which scanpy reads.
        return sp.csr_matrix((data, indices, np.arange(0, n_cells * k + 1, k)), shape=(n_cells, n_cells))

    def fit_transform(self, X: Any, y: Any = None) -> sp.csr_matrix:
        return self.fit(X).transform(X)


def scanpy_neighbours(values: Any, n_pcs: int = 50, n_neighbors: int = 15, seed: int = 0) -> Any:
    """An AnnData of ``values`` with scanpy's PCA and neighbour graph (UMAP connectivities), ready
    for ``sc.tl.leiden`` and ``sc.tl.umap``; the neighbours come from :class:`NeighboursTransformer`.
    ``n_pcs`` and ``n_neighbors`` are capped to fit small inputs."""
    import anndata as ad
    import scanpy as sc

    matrix = values.astype(np.float32) if sp.issparse(values) else np.asarray(values, dtype=np.float32)
    adata = ad.AnnData(X=matrix)
    sc.pp.pca(adata, n_comps=min(n_pcs, min(adata.shape) - 1), random_state=seed)
    transformer = NeighboursTransformer(min(n_neighbors, adata.n_obs - 1), seed)
    sc.pp.neighbors(adata, use_rep="X_pca", random_state=seed, transformer=transformer)
    return adata


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"model.context_k must be >= 1, got {k}")


def _check_steps(steps: int) -> None:
    if steps < 1:
        raise ValueError(f"model.context_steps must be >= 1, got {steps}")


def diffuse(weights: sp.csr_matrix, steps: int) -> sp.csr_matrix:
    """``steps`` random-walk steps on ``weights`` with the walks that return to their cell removed
    and the rows renormalised, so a cell's own values never come back to it."""
    return NeighbourWalk(weights, steps)[:]


class NeighbourWalk:
    """The rows of :func:`diffuse`'s walk, each computed when asked for.

    The whole walk of ``steps`` steps holds up to ``k**steps`` entries per cell (225 at k = 15, two
    steps: ~200 MB at 100k cells), the one-step graph ``k``. Training asks for one batch of rows at
    a time and imputation one chunk, so only the graph is kept. Every row is computed exactly as in
    the whole walk (each row of a sparse product depends only on that row), so the numbers are the same.
    """

    def __init__(self, weights: sp.spmatrix, steps: int) -> None:
        _check_steps(steps)
        self.weights = sp.csr_matrix(weights)
        self.steps = steps
        self.shape = self.weights.shape

    def __getitem__(self, rows: Any) -> sp.csr_matrix:
        cells = np.arange(self.shape[0])[rows]
        return walk_on(self.weights[cells], self.weights, self.steps, cells)


def walk_on(first: sp.spmatrix, weights: sp.csr_matrix, steps: int, own: np.ndarray) -> sp.csr_matrix:
    """Rows that take their first step by ``first`` (over ``weights``' cells) and ``steps - 1`` more on
    ``weights``, the walks back to each row's own cell removed and the rows renormalised.

    ``own`` is each row's cell among ``weights``' (-1 for a cell that is not one of them: a new cell
    walking on a reference's graph has no walk back to itself to remove).
    """
    walk = sp.csr_matrix(first)
    for _ in range(steps - 1):
        walk = sp.csr_matrix(walk @ weights)
        own_cell = np.repeat(own, np.diff(walk.indptr))
        walk.data[walk.indices == own_cell] = 0.0  # the walks back to their own cell
        walk.eliminate_zeros()
        walk = sp.csr_matrix(sp.diags(1.0 / np.asarray(walk.sum(axis=1)).ravel()) @ walk)
    return walk
