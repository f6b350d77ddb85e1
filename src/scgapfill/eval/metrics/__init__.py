"""Scores of an imputation, all in the evaluation space ``log1p(counts / sf * 1e4)``.

* held-out entries: RMSE and Pearson against the hidden true values;
* molecular cross-validation (Batson et al. 2019), as in OpenProblems' denoising task;
* clustering before / after imputation against known labels (ARI);
* simulated data: distance to the true counts and true means, and the rate of
  gene-gene correlations that imputation invents.
"""

from __future__ import annotations

from scgapfill.eval.metrics._common import pearson, rmse
from scgapfill.eval.metrics.clustering import cluster_labels, clustering_scores
from scgapfill.eval.metrics.heldout import MIN_HELDOUT_PER_GENE, depth_floor, heldout_scores
from scgapfill.eval.metrics.mcv import mcv_scores
from scgapfill.eval.metrics.truth import FALSE_CORR_MIN_ABS_R, INDEPENDENT_MAX_ABS_R, truth_scores

__all__ = [
    "heldout_scores",
    "depth_floor",
    "mcv_scores",
    "cluster_labels",
    "clustering_scores",
    "truth_scores",
    "rmse",
    "pearson",
    "MIN_HELDOUT_PER_GENE",
    "INDEPENDENT_MAX_ABS_R",
    "FALSE_CORR_MIN_ABS_R",
]
