"""Kedro dataset for a trained gap-filling model (weights-only ``.pt`` bundle)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version, get_filepath_str, get_protocol_and_path


class GapFillModelDataset(AbstractVersionedDataset):
    """Save/load a :class:`scgapfill.model_io.GapFillBundle`.

    The file holds tensors and plain data only and is read with
    ``torch.load(weights_only=True)``: loading never unpickles code.
    """

    def __init__(self, *, filepath: str, version: Version | None = None, metadata: dict[str, Any] | None = None) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        if protocol != "file":
            raise DatasetError(f"GapFillModelDataset supports local files only, got {filepath!r}")
        super().__init__(filepath=PurePosixPath(path), version=version, exists_function=lambda p: Path(p).is_file())
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}

    def load(self):
        from scgapfill.model_io import GapFillBundle

        return GapFillBundle.load(get_filepath_str(self._get_load_path(), "file"))

    def save(self, data) -> None:
        from scgapfill.model_io import GapFillBundle

        if not isinstance(data, GapFillBundle):
            raise DatasetError(f"GapFillModelDataset can only save a GapFillBundle, got {type(data).__name__}")
        data.save(get_filepath_str(self._get_save_path(), "file"))

    def _exists(self) -> bool:
        try:
            return Path(get_filepath_str(self._get_load_path(), "file")).is_file()
        except DatasetError:
            return False
