"""scgapfill: fill dropout gaps in single-cell RNA-seq with a U-Net on a gene grid.

The package modules know nothing of Kedro and can be used from a notebook::

    import scgapfill
    adata = scgapfill.simulate(n_cells=500)
    scgapfill.impute(adata)                          # adata.layers["imputed"]
    model = scgapfill.GapFill().fit(adata)           # or keep the model: impute, save, load

torch and lightning are imported only by the modules that train or impute: ``GapFill`` and
``impute`` are loaded on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from scgapfill.data.simulate import simulate  # noqa: E402

__all__ = ["GapFill", "impute", "simulate", "__version__"]

_LAZY = {"GapFill", "impute"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from scgapfill import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
