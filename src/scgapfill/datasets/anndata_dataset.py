"""Kedro dataset for AnnData objects stored as ``.h5ad``."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import anndata as ad
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version, get_filepath_str, get_protocol_and_path

from ._atomic import atomic_path


class AnnDataDataset(AbstractVersionedDataset[ad.AnnData, ad.AnnData]):
    """Load and save an :class:`anndata.AnnData` as ``.h5ad``.

    Saving writes a temporary file beside the target and renames it, so a crash
    never leaves half a file. Works with ``versioned: true``.

    Example catalog entry::

        processed:
          type: scgapfill.datasets.AnnDataDataset
          filepath: data/03_primary/processed.h5ad
          save_args: {compression: gzip}
    """

    def __init__(
        self,
        *,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        if protocol != "file":
            raise DatasetError(f"AnnDataDataset supports local files only, got {filepath!r}")
        super().__init__(filepath=PurePosixPath(path), version=version, exists_function=self._exists_local)
        self._load_args = dict(load_args or {})
        self._save_args = dict(save_args or {})
        self.metadata = metadata

    @staticmethod
    def _exists_local(path: str) -> bool:
        from pathlib import Path

        return Path(path).is_file()

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._filepath),
            "version": self._version,
            "load_args": self._load_args,
            "save_args": self._save_args,
        }

    def load(self) -> ad.AnnData:
        path = get_filepath_str(self._get_load_path(), "file")
        return ad.read_h5ad(path, **self._load_args)

    def save(self, data: ad.AnnData) -> None:
        if not isinstance(data, ad.AnnData):
            raise DatasetError(f"AnnDataDataset can only save AnnData, got {type(data).__name__}")
        path = get_filepath_str(self._get_save_path(), "file")
        with atomic_path(path, ".h5ad") as tmp:
            data.write_h5ad(tmp, **self._save_args)

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), "file")
        except DatasetError:
            return False
        return self._exists_local(path)
