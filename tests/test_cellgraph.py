"""The cell graph at sizes where scanpy and the neighbour search change path.

scanpy 1.11 switches ``sc.pp.neighbors`` to pynndescent above 4,096 cells and its result then
broke every caller above ~8k cells (``'csr_array' object has no attribute 'getnnz'``); UMAP
changes its epochs above 10,000 cells. These tests build graphs above those sizes on cheap
random data so a break of that kind fails here, not in a user's run.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from scgapfill.graph.cellgraph import NeighboursTransformer, knn_graph, nearest_neighbours, scanpy_neighbours

N_LARGE = 10_500  # above scanpy's 4,096 / 8,192 thresholds and UMAP's 10,000


def _clustered(n_cells: int, n_dims: int = 30, n_groups: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(n_groups, n_dims))
    groups = rng.integers(n_groups, size=n_cells)
    return (centres[groups] + rng.normal(size=(n_cells, n_dims))).astype(np.float32), groups


@pytest.fixture(scope="module")
def large():
    return _clustered(N_LARGE)


def _recall(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([np.intersect1d(a, e).size / e.size for a, e in zip(approx, exact)]))


def test_exact_neighbours_exclude_the_cell_and_are_nearest_first():
    X, _ = _clustered(300)
    neighbours, distances = nearest_neighbours(X, 10)
    assert neighbours.shape == distances.shape == (300, 10)
    assert not (neighbours == np.arange(300)[:, None]).any()
    assert (np.diff(distances, axis=1) >= 0).all()
    brute = np.linalg.norm(X[:, None, :] - X[None, :, :], axis=2)
    np.fill_diagonal(brute, np.inf)
    np.testing.assert_allclose(distances[:, 0], brute.min(axis=1), rtol=1e-5)


def test_duplicate_cells_never_list_themselves():
    X = np.repeat(np.arange(20, dtype=np.float32)[:, None], 3, axis=0)  # every cell three times
    neighbours, _ = nearest_neighbours(X, 4)
    assert not (neighbours == np.arange(60)[:, None]).any()


def test_approximate_search_above_the_threshold_finds_the_exact_neighbours(large):
    X, _ = large
    exact, _ = nearest_neighbours(X, 15)
    approx, distances = nearest_neighbours(X, 15, seed=0, exact_max_cells=1_000)
    assert approx.shape == (N_LARGE, 15)
    assert not (approx == np.arange(N_LARGE)[:, None]).any()
    assert (np.diff(distances, axis=1) >= -1e-6).all()
    assert _recall(approx, exact) > 0.9
    again, _ = nearest_neighbours(X, 15, seed=0, exact_max_cells=1_000)
    np.testing.assert_array_equal(approx, again)  # seeded: the same graph, the same metrics


def test_knn_graph_is_row_stochastic_without_self_loops(large):
    X, _ = large
    graph = knn_graph(X, 15)
    assert sp.isspmatrix_csr(graph)
    np.testing.assert_allclose(np.asarray(graph.sum(axis=1)).ravel(), 1.0)
    assert graph.diagonal().sum() == 0


@pytest.mark.parametrize("exact_max_cells", [None, 1_000])
def test_scanpy_neighbours_above_its_approximate_threshold(large, exact_max_cells):
    import scanpy as sc
    import anndata as ad

    X, _ = large
    adata = ad.AnnData(X=X)
    kwargs = {} if exact_max_cells is None else {"exact_max_cells": exact_max_cells}
    sc.pp.neighbors(adata, use_rep="X", transformer=NeighboursTransformer(15, **kwargs))
    connectivities = adata.obsp["connectivities"]
    assert connectivities.shape == (N_LARGE, N_LARGE)
    assert (connectivities != connectivities.T).nnz == 0  # UMAP's fuzzy union is symmetric
    assert (np.diff(connectivities.indptr) >= 14).all()  # every cell keeps its 14 neighbours


def test_scanpy_neighbours_match_scanpys_exact_graph_on_small_data():
    import anndata as ad
    import scanpy as sc

    X, _ = _clustered(500, n_dims=60)
    reference = ad.AnnData(X=X.copy())
    sc.pp.pca(reference, n_comps=50, random_state=0)
    sc.pp.neighbors(reference, n_neighbors=15, use_rep="X_pca", random_state=0)
    ours = scanpy_neighbours(X, n_pcs=50, n_neighbors=15, seed=0)
    assert abs(ours.obsp["connectivities"] - reference.obsp["connectivities"]).max() == 0


def test_clustering_and_umap_above_every_size_threshold(large):
    from scgapfill.eval.metrics import cluster_labels
    from scgapfill.eval.plots import _umap

    X, groups = large
    X = np.abs(X[:, :20])  # PCA on a wide-enough matrix; PCA, Leiden and UMAP all at 10.5k cells
    labels = cluster_labels(X, n_target=8, seed=0, n_pcs=10, max_tries=4)
    assert labels.shape == (N_LARGE,)
    assert 2 <= np.unique(labels).size <= 30
    coords = _umap(X, seed=0)
    assert coords.shape == (N_LARGE, 2) and np.isfinite(coords).all()
