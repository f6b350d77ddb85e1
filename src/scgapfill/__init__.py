"""scgapfill: fill dropout gaps in single-cell RNA-seq with a U-Net on a gene grid.

The package modules know nothing of Kedro and can be used from a notebook::

    import scgapfill
    adata = scgapfill.simulate(n_cells=500)

torch and lightning are imported only by the modules that train or impute.
"""

__version__ = "0.1.0"

from .simulate import simulate  # noqa: E402

__all__ = ["simulate", "__version__"]
