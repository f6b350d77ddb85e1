"""Kedro dataset for AnnData objects stored as ``.h5ad``."""

from __future__ import annotations

from typing import Any

import anndata as ad
from kedro.io.core import DatasetError, Version

from scgapfill.data.atomic import atomic_path
from scgapfill.glue.datasets._local_file import LocalFileDataset


class AnnDataDataset(LocalFileDataset):
    """Load and save an :class:`anndata.AnnData` as ``.h5ad``.

    Saving writes a temporary file beside the target and renames it, so a crash
    never leaves half a file. Works with ``versioned: true``.

    Example catalog entry::

        processed:
          type: scgapfill.glue.datasets.AnnDataDataset
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
        super().__init__(filepath=filepath, version=version, metadata=metadata)
        self._load_args = dict(load_args or {})
        self._save_args = dict(save_args or {})

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "load_args": self._load_args, "save_args": self._save_args}

    def load(self) -> ad.AnnData:
        return ad.read_h5ad(self.load_path, **self._load_args)

    def save(self, data: ad.AnnData) -> None:
        # Also takes objects that write themselves as .h5ad (scgapfill.infer.streaming.StreamedImputation
        # writes its dense layer chunk by chunk); the temporary file keeps that all-or-nothing too.
        if not isinstance(data, ad.AnnData) and not callable(getattr(data, "write_h5ad", None)):
            raise DatasetError(f"AnnDataDataset can only save AnnData, got {type(data).__name__}")
        with atomic_path(self.save_path, ".h5ad") as tmp:
            data.write_h5ad(tmp, **self._save_args)
