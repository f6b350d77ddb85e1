"""scVI baseline (Lopez et al., Nature Methods 2018); needs the optional ``scvi-tools``."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from scgapfill.data.normalization import check_counts, size_factors

__all__ = ["scvi", "scvi_available", "SCVI_MISSING"]

SCVI_MISSING = "scvi baseline needs scvi-tools: pip install -e '.[scvi]'"


def scvi_available() -> bool:
    """Whether ``scvi-tools`` is installed, checked without importing it (the import is slow)."""
    return importlib.util.find_spec("scvi") is not None


def scvi(
    counts: Any,
    *,
    seed: int = 0,
    n_latent: int = 10,
    max_epochs: int | None = None,
    batch_size: int = 128,
    accelerator: str = "auto",
) -> np.ndarray:
    """Train scVI on the counts and return ``log1p`` of its expression scaled to 1e4 per cell.

    Parameters
    ----------
    counts
        Cells x genes (masked) integer counts, scipy sparse or dense.
    seed
        ``scvi.settings.seed`` (which also seeds torch, numpy and random globally).
    n_latent
        Latent dimensions.
    max_epochs
        Training epochs; ``None`` lets scvi-tools pick from the data size (at most 400).
    batch_size, accelerator
        Passed to ``SCVI.train``.

    Raises
    ------
    ImportError
        If scvi-tools is not installed.
    """
    if not scvi_available():
        raise ImportError(SCVI_MISSING)
    if isinstance(n_latent, bool) or not isinstance(n_latent, (int, np.integer)) or n_latent < 1:
        raise ValueError(f"n_latent must be a positive integer, got {n_latent!r}")
    if max_epochs is not None and (not isinstance(max_epochs, (int, np.integer)) or max_epochs < 1):
        raise ValueError(f"max_epochs must be a positive integer or None, got {max_epochs!r}")
    raw = check_counts(counts)
    size_factors(raw)  # same empty-cell check as every other baseline
    if raw.nnz and not np.allclose(raw.data, np.rint(raw.data)):
        raise ValueError("scvi models integer counts; give raw (masked) counts, not normalised values")

    import anndata
    import scvi as scvi_tools

    scvi_tools.settings.seed = seed
    adata = anndata.AnnData(X=raw.astype(np.float32))
    scvi_tools.model.SCVI.setup_anndata(adata)
    model = scvi_tools.model.SCVI(adata, n_latent=n_latent)
    model.train(
        max_epochs=max_epochs, batch_size=batch_size, accelerator=accelerator, enable_progress_bar=False
    )
    # The decoder's mean expression, scaled to 1e4 per cell: the same target_sum as lognorm.
    expression = model.get_normalized_expression(library_size=1e4, return_numpy=True)
    return np.log1p(np.asarray(expression, dtype=np.float64))
