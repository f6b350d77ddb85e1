"""Kedro dataset for a scipy sparse matrix stored as ``.npz`` (e.g. the held-out mask)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import scipy.sparse as sp
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version, get_filepath_str, get_protocol_and_path

from ._atomic import atomic_path


class SparseMatrixDataset(AbstractVersionedDataset[sp.spmatrix, sp.csr_matrix]):
    """Load and save a sparse matrix with :func:`scipy.sparse.save_npz` (written whole or not at all)."""

    def __init__(self, *, filepath: str, version: Version | None = None, metadata: dict[str, Any] | None = None) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        if protocol != "file":
            raise DatasetError(f"SparseMatrixDataset supports local files only, got {filepath!r}")
        super().__init__(filepath=PurePosixPath(path), version=version, exists_function=lambda p: Path(p).is_file())
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}

    def load(self) -> sp.csr_matrix:
        return sp.load_npz(get_filepath_str(self._get_load_path(), "file")).tocsr()

    def save(self, data: sp.spmatrix) -> None:
        if not sp.issparse(data):
            raise DatasetError(f"SparseMatrixDataset can only save scipy sparse matrices, got {type(data).__name__}")
        path = get_filepath_str(self._get_save_path(), "file")
        with atomic_path(path, ".npz") as tmp:
            sp.save_npz(tmp, sp.csr_matrix(data), compressed=True)

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), "file")
        except DatasetError:
            return False
        return Path(path).is_file()
