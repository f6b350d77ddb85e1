"""What every score shares: dense checks, RMSE, Pearson, per-cell normalisation by own totals."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from scgapfill.data.normalization import lognorm


def _dense(values: Any, name: str) -> np.ndarray:
    if sp.issparse(values):
        values = values.toarray()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D (cells x genes), got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or infinite values; fix the imputation before scoring")
    return values


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; they must match")


def rmse(pred: Any, true: Any) -> float:
    """Root mean squared error over all entries."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.size == 0:
        raise ValueError(f"rmse needs two non-empty arrays of one shape, got {pred.shape} and {true.shape}")
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def pearson(pred: Any, true: Any) -> float:
    """Pearson correlation over all entries; NaN when either side is constant."""
    pred = np.asarray(pred, dtype=np.float64).ravel()
    true = np.asarray(true, dtype=np.float64).ravel()
    if pred.shape != true.shape or pred.size < 2:
        raise ValueError(f"pearson needs two arrays of one size >= 2, got {pred.size} and {true.size}")
    dp, dt = pred - pred.mean(), true - true.mean()
    denom = np.sqrt(np.sum(dp**2) * np.sum(dt**2))
    return float(np.sum(dp * dt) / denom) if denom > 0 else float("nan")


def _lognorm_own_totals(counts: np.ndarray, target_sum: float) -> np.ndarray:
    """scanpy's normalize_total + log1p: each row scaled to ``target_sum``; all-zero rows stay 0."""
    totals = counts.sum(axis=1)
    return lognorm(counts, np.where(totals > 0, totals, 1.0), target_sum)
