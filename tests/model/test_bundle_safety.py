"""A model file from elsewhere is data, never code: loading it runs nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from scgapfill.nn.bundle import GapFillBundle


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "gapfill_model.pt"
    torch.save({"state_dict": Payload(marker)}, path)
    with pytest.raises(ValueError, match="not a scgapfill model bundle"):
        GapFillBundle.load(path)
    assert not marker.exists()
