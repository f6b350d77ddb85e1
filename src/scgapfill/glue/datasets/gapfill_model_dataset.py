"""Kedro dataset for a trained gap-filling model (weights-only ``.pt`` bundle)."""

from __future__ import annotations

from kedro.io.core import DatasetError

from scgapfill.glue.datasets._local_file import LocalFileDataset


class GapFillModelDataset(LocalFileDataset):
    """Save/load a trained :class:`scgapfill.GapFill` as its weights-only bundle.

    The file holds tensors and plain data only and is read with
    ``torch.load(weights_only=True)``: loading never unpickles code. The bundle
    writes itself to a temporary file and renames it.
    """

    def load(self):
        from scgapfill.model import GapFill
        from scgapfill.nn.bundle import GapFillBundle

        return GapFill.from_bundle(GapFillBundle.load(self.load_path))

    def save(self, data) -> None:
        from scgapfill.model import GapFill

        if not isinstance(data, GapFill) or not data.is_fitted:
            raise DatasetError(f"GapFillModelDataset saves a trained GapFill, got {data!r}")
        data.bundle.save(self.save_path)
