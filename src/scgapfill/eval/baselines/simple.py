"""Simple baselines: no imputation, two per-gene fillers that know nothing of cell types, and
k-nearest-cell averaging.

Each follows the common baseline signature ``impute(counts, *, seed=0, **kwargs)`` and
returns a dense array in the evaluation space ``lognorm(counts, size_factors(counts))``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from scgapfill.data.normalization import check_counts, expected_lognorm, lognorm, size_factors

__all__ = ["lognorm_counts", "none", "gene_mean", "gene_depth", "expected_nonzero_lognorm", "zeros_as_nonzero_draws", "knn",
           "knn_spatial"]

def lognorm_counts(counts: Any) -> sp.csr_matrix:
    """Validated counts in the evaluation space, as CSR with no stored zeros."""
    matrix = check_counts(counts)
    return lognorm(matrix, size_factors(matrix))


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def none(counts: Any, *, seed: int = 0) -> np.ndarray:
    """No imputation: the lognorm of the input, densified.

    Parameters
    ----------
    counts
        Cells x genes (masked) counts, scipy sparse or dense.
    seed
        Unused; kept for the common signature.
    """
    return lognorm_counts(counts).toarray()


def gene_mean(counts: Any, *, seed: int = 0) -> np.ndarray:
    """Fill each zero with the gene's mean over its nonzero lognorm values.

    Genes with no nonzero value stay 0. A trivial filler: the sanity row of the benchmark.

    Parameters
    ----------
    counts
        Cells x genes (masked) counts, scipy sparse or dense.
    seed
        Unused; kept for the common signature.
    """
    values = lognorm_counts(counts)
    n_nonzero = np.diff(values.tocsc().indptr)
    sums = np.asarray(values.sum(axis=0)).ravel()
    means = np.divide(sums, n_nonzero, out=np.zeros_like(sums), where=n_nonzero > 0)
    dense = values.toarray()
    zero = dense == 0
    dense[zero] = np.broadcast_to(means, dense.shape)[zero]
    return dense


def expected_nonzero_lognorm(expected: Any, library: Any, target_sum: float = 1e4) -> np.ndarray:
    """``E[log1p(target_sum * c / library) | c > 0]`` for ``c ~ Poisson(expected)``, elementwise.

    The value a *nonzero* count takes in the evaluation space, on average, for a cell of this
    library size: what a held-out entry (always a nonzero count) looks like, without knowing the
    count (:func:`scgapfill.data.normalization.expected_lognorm` given a nonzero draw).
    """
    return expected_lognorm(expected, library, target_sum, given_nonzero=True)


def gene_depth(counts: Any, *, seed: int = 0) -> np.ndarray:
    """Fill each zero with the value a nonzero count of its gene takes at its cell's depth.

    Each gene gets one share of all counts (no cell types, no neighbours); a zero of cell ``i``,
    gene ``g`` becomes :func:`expected_nonzero_lognorm` of ``share_g * library_i``. It is the
    floor of the held-out scores: a held-out entry is a nonzero count, so its lognorm value is
    set mostly by the gene's level and the cell's depth, which this filler knows and nothing else.
    A method must beat it to show that it knows which cell expresses what.

    Parameters
    ----------
    counts
        Cells x genes (masked) counts, scipy sparse or dense.
    seed
        Unused; kept for the common signature.
    """
    matrix = check_counts(counts)
    library = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    share = np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel() / max(library.sum(), 1.0)
    return zeros_as_nonzero_draws(lognorm(matrix, size_factors(matrix)).toarray(), matrix, share[None, :])


def zeros_as_nonzero_draws(values: np.ndarray, counts: Any, shares: Any) -> np.ndarray:
    """``values`` with each zero count replaced by :func:`expected_nonzero_lognorm` of ``shares x library``.

    ``shares`` (broadcast to cells x genes) is each entry's expected share of its cell's counts;
    cells without counts keep their values. ``values`` is changed in place and returned.
    """
    counts = sp.csr_matrix(counts)
    library = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    rows, cols = np.nonzero(counts.toarray() == 0)
    has_counts = library[rows] > 0
    rows, cols = rows[has_counts], cols[has_counts]
    expected = np.broadcast_to(shares, values.shape)[rows, cols] * library[rows]
    values[rows, cols] = expected_nonzero_lognorm(expected, library[rows])
    return values


def knn(counts: Any, *, k: int = 15, n_pcs: int = 30, seed: int = 0) -> np.ndarray:
    """Average each cell's lognorm profile over its ``k`` nearest cells in PCA space.

    Parameters
    ----------
    counts
        Cells x genes (masked) counts, scipy sparse or dense; at least 2 cells and 2 genes.
    k
        Neighbours per cell, the cell itself included; at most ``n_cells``.
    n_pcs
        Principal components; capped at ``min(n_cells, n_genes) - 1``.
    seed
        Random state of the PCA solver.
    """
    from scgapfill.graph.cellgraph import nearest_neighbours, pca_embedding

    k = _check_positive_int(k, "k")
    n_pcs = _check_positive_int(n_pcs, "n_pcs")
    values = lognorm_counts(counts)
    n_cells, n_genes = values.shape
    if min(n_cells, n_genes) < 2:
        raise ValueError(f"knn needs at least 2 cells and 2 genes, got shape {values.shape}")
    if k > n_cells:
        raise ValueError(f"knn k={k} exceeds the number of cells ({n_cells}); lower k")
    if k == 1:
        return np.asarray(values.toarray())
    # PCA on the sparse matrix and the project's neighbour search: nothing dense but the output.
    embedding, _ = pca_embedding(values, n_pcs, seed)
    others, _ = nearest_neighbours(embedding, k - 1, seed)
    neighbours = np.hstack([np.arange(n_cells)[:, None], others])
    # A sparse row-averaging operator keeps the smoothing O(n_cells * k * nnz per cell).
    rows = np.repeat(np.arange(n_cells), k)
    weights = sp.csr_matrix((np.full(rows.size, 1.0 / k), (rows, neighbours.ravel())), shape=(n_cells, n_cells))
    return np.asarray((weights @ values).toarray())


def knn_spatial(counts: Any, *, positions: Any = None, k: int = 15, seed: int = 0) -> np.ndarray:
    """Average each spot's lognorm profile over its ``k`` nearest spots in the tissue: :func:`knn` with
    the neighbours found by the spots' coordinates (``obsm["spatial"]``) instead of their expression, never
    across sections.

    Parameters
    ----------
    counts
        Spots x genes (masked) counts, scipy sparse or dense.
    positions
        The spots' :class:`~scgapfill.graph.spatial.SpotPositions` (one per row of ``counts``; from
        :func:`~scgapfill.graph.spatial.positions_of`).
    k
        Spots averaged, the spot itself included (capped at each section's spots).
    seed
        Unused (the search is exact); the baselines' common signature.
    """
    from scgapfill.graph.spatial import check_graph, spatial_graph

    k = _check_positive_int(k, "k")
    values = lognorm_counts(counts)
    check_graph("spatial", positions, values.shape[0])
    if k == 1:
        return np.asarray(values.toarray())
    others = spatial_graph(positions, k - 1)  # weight 1/n on each of a spot's n neighbours
    # The spot and its neighbours, equal weights (as knn: the spot itself is one of the k).
    counted = np.diff(others.indptr).astype(np.float64)
    weights = sp.diags(counted / (counted + 1)) @ others + sp.diags(1.0 / (counted + 1))
    return np.asarray((sp.csr_matrix(weights) @ values).toarray())
