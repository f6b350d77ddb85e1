"""What the project's file datasets share: a local, optionally versioned file."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version, get_filepath_str, get_protocol_and_path


class LocalFileDataset(AbstractVersionedDataset):
    """A versioned dataset stored in one local file; subclasses read and write ``self.load_path`` / ``self.save_path``."""

    def __init__(self, *, filepath: str, version: Version | None = None, metadata: dict[str, Any] | None = None) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        if protocol != "file":
            raise DatasetError(f"{type(self).__name__} supports local files only, got {filepath!r}")
        super().__init__(filepath=PurePosixPath(path), version=version, exists_function=lambda p: Path(p).is_file())
        self.metadata = metadata

    @property
    def load_path(self) -> str:
        return get_filepath_str(self._get_load_path(), "file")

    @property
    def save_path(self) -> str:
        return get_filepath_str(self._get_save_path(), "file")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}

    def _exists(self) -> bool:
        try:
            return Path(self.load_path).is_file()
        except DatasetError:
            return False
