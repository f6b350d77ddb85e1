"""Training of the gap-filling U-Net.

``fit_gapfill`` is imported lazily: Lightning takes seconds to import and most
callers of this package (CLI start-up, kedro-viz) never train.
"""

from __future__ import annotations

from typing import Any

__all__ = ["fit_gapfill", "GeneScaler"]


def __getattr__(name: str) -> Any:
    if name == "fit_gapfill":
        from scgapfill.train.fit import fit_gapfill

        return fit_gapfill
    if name == "GeneScaler":
        from scgapfill.train.data import GeneScaler

        return GeneScaler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
