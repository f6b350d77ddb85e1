"""Kedro datasets for single-cell data: AnnData (.h5ad), sparse matrices (.npz), trained models (.pt)."""

from scgapfill.glue.datasets.anndata_dataset import AnnDataDataset
from scgapfill.glue.datasets.gapfill_model_dataset import GapFillModelDataset
from scgapfill.glue.datasets.sparse_matrix_dataset import SparseMatrixDataset

__all__ = ["AnnDataDataset", "GapFillModelDataset", "SparseMatrixDataset"]
