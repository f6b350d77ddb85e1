"""Simple baselines: no imputation, a per-gene mean filler, and k-nearest-cell averaging.

Each follows the common baseline signature ``impute(counts, *, seed=0, **kwargs)`` and
returns a dense array in the evaluation space ``lognorm(counts, size_factors(counts))``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from scgapfill.normalization import check_counts, lognorm, size_factors

__all__ = ["lognorm_counts", "none", "gene_mean", "knn"]


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
    from ..cellgraph import nearest_neighbours, pca_embedding

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
