"""Kedro datasets for single-cell data: AnnData (.h5ad), sparse matrices (.npz), trained models (.pt)."""

from .anndata_dataset import AnnDataDataset
from .gapfill_model_dataset import GapFillModelDataset
from .sparse_matrix_dataset import SparseMatrixDataset

__all__ = ["AnnDataDataset", "GapFillModelDataset", "SparseMatrixDataset"]
