"""Kedro dataset for a scipy sparse matrix stored as ``.npz`` (e.g. the held-out mask)."""

from __future__ import annotations

import scipy.sparse as sp
from kedro.io.core import DatasetError

from scgapfill.data.atomic import atomic_path
from scgapfill.glue.datasets._local_file import LocalFileDataset


class SparseMatrixDataset(LocalFileDataset):
    """Load and save a sparse matrix with :func:`scipy.sparse.save_npz` (written whole or not at all)."""

    def load(self) -> sp.csr_matrix:
        return sp.load_npz(self.load_path).tocsr()

    def save(self, data: sp.spmatrix) -> None:
        if not sp.issparse(data):
            raise DatasetError(f"SparseMatrixDataset can only save scipy sparse matrices, got {type(data).__name__}")
        with atomic_path(self.save_path, ".npz") as tmp:
            sp.save_npz(tmp, sp.csr_matrix(data), compressed=True)
