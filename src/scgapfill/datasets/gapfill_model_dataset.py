"""Kedro dataset for a trained gap-filling model (weights-only ``.pt`` bundle)."""

from __future__ import annotations

from kedro.io.core import DatasetError

from ._local_file import LocalFileDataset


class GapFillModelDataset(LocalFileDataset):
    """Save/load a :class:`scgapfill.model_io.GapFillBundle`.

    The file holds tensors and plain data only and is read with
    ``torch.load(weights_only=True)``: loading never unpickles code. The bundle
    writes itself to a temporary file and renames it.
    """

    def load(self):
        from scgapfill.model_io import GapFillBundle

        return GapFillBundle.load(self.load_path)

    def save(self, data) -> None:
        from scgapfill.model_io import GapFillBundle

        if not isinstance(data, GapFillBundle):
            raise DatasetError(f"GapFillModelDataset can only save a GapFillBundle, got {type(data).__name__}")
        data.save(self.save_path)
