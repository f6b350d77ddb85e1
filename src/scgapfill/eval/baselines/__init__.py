"""Imputation baselines behind one signature: ``impute(counts, *, seed=0, **kwargs)``.

Each takes (masked) counts, scipy sparse CSR, and returns a dense ``(n_cells, n_genes)``
array in the evaluation space ``lognorm(counts, size_factors(counts))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# Submodules, not their functions, are bound here so that ``scgapfill.eval.baselines.magic``
# stays the module (the functions share the module names).
from scgapfill.eval.baselines import alra, magic, scvi, simple

__all__ = ["BASELINES", "available_baselines", "run_baseline"]

BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "none": simple.none,
    "gene_mean": simple.gene_mean,
    "gene_depth": simple.gene_depth,
    "knn": simple.knn,
    "knn_spatial": simple.knn_spatial,
    "magic": magic.magic,
    "alra": alra.alra,
    "scvi": scvi.scvi,
}


def available_baselines() -> list[str]:
    """Names of the baselines that can run here; ``scvi`` only when scvi-tools is installed."""
    return [name for name in BASELINES if name != "scvi" or scvi.scvi_available()]


def run_baseline(name: str, counts: Any, seed: int = 0, **kwargs: Any) -> np.ndarray:
    """Run the baseline ``name`` on ``counts``.

    Parameters
    ----------
    name
        A key of :data:`BASELINES`.
    counts
        Cells x genes (masked) counts, scipy sparse CSR.
    seed
        Random seed, passed on.
    **kwargs
        The baseline's own options (e.g. ``k`` for ``knn``; ``positions`` for ``knn_spatial``).
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    return BASELINES[name](counts, seed=seed, **kwargs)
