"""Molecular cross-validation (Batson et al. 2019), as in OpenProblems' denoising task."""

from __future__ import annotations

from typing import Any

import numpy as np

from scgapfill.data.normalization import counts_from_lognorm, size_factors

from scgapfill.eval.metrics._common import _dense, _lognorm_own_totals, _same_shape


def mcv_scores(
    denoised_lognorm: Any, train_counts: Any, test_counts: Any, target_sum: float = 1e4
) -> dict[str, float]:
    """Molecular cross-validation scores (Batson et al. 2019), as in OpenProblems' denoising.

    The denoised lognorm matrix is mapped back to counts with the train size factors.

    * ``mcv_mse``: mean squared error between ``log1p(normalize_total(test))`` and
      ``log1p(normalize_total(denoised counts))``, both scaled to ``target_sum`` per
      cell by their own totals; cells with no test counts are skipped.
    * ``mcv_poisson``: mean over entries of ``pred - y * log(pred + 1e-6)`` with
      ``y`` the test counts and ``pred`` the denoised counts times
      ``test.sum() / train.sum()`` (one global scale). Unlike OpenProblems v1, whose call
      swapped the two arguments, ``pred`` here is the model and ``y`` the data.

    Parameters
    ----------
    denoised_lognorm
        ``(n_cells, n_genes)`` output of a method run on ``train_counts``; must be >= 0.
    train_counts, test_counts
        The MCV split of the counts (same shape).
    target_sum
        Per-cell total of the normalisation.
    """
    denoised = _dense(denoised_lognorm, "denoised_lognorm")
    if denoised.min() < 0:
        raise ValueError(
            f"denoised_lognorm has negative values (min {denoised.min():.4g}); counts would be negative, "
            "clip the output at 0 first"
        )
    train_sf = size_factors(train_counts)
    test = _dense(test_counts, "test_counts")
    _same_shape(denoised, test, "denoised_lognorm", "test_counts")
    if tuple(train_counts.shape) != denoised.shape:
        raise ValueError(
            f"denoised_lognorm has shape {denoised.shape} but train_counts {tuple(train_counts.shape)}; they must match"
        )
    if test.min() < 0:
        raise ValueError("test_counts has negative values; give the raw MCV test counts")
    if test.sum() <= 0:
        raise ValueError("test_counts is all zero; raise the MCV test fraction")
    denoised_counts = counts_from_lognorm(denoised, train_sf, target_sum)

    keep = test.sum(axis=1) > 0
    mse = np.mean(
        (_lognorm_own_totals(test[keep], target_sum) - _lognorm_own_totals(denoised_counts[keep], target_sum)) ** 2
    )
    pred = denoised_counts * (test.sum() / train_sf.sum())
    poisson = np.mean(pred - test * np.log(pred + 1e-6))
    return {"mcv_mse": float(mse), "mcv_poisson": float(poisson)}
