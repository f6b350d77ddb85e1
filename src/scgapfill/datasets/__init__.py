"""Kedro datasets for single-cell data: AnnData (.h5ad) and sparse matrices (.npz)."""

from .anndata_dataset import AnnDataDataset
from .sparse_matrix_dataset import SparseMatrixDataset

__all__ = ["AnnDataDataset", "SparseMatrixDataset"]
