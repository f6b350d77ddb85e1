"""Score one imputation method with the project's evaluation protocol (docs/evaluation.md).

:class:`EvaluationData` gathers, once per data set and mask seed, what only
evaluation may read (held-out values, MCV test counts, labels, simulation
truth); :func:`score_method` turns a method's two outputs (imputation of the
masked counts, denoising of the MCV train split) into every metric.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scgapfill.data import masks
from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.eval import metrics
from scgapfill.params import EvaluationParams, parse

log = logging.getLogger(__name__)

# An input zero counts as "filled" when the method puts at least this much there (log1p scale,
# about 0.1 counts per 10k): below it the value is indistinguishable from zero for any analysis.
FILLED_MIN = 0.1


@dataclass
class EvaluationData:
    """The evaluation side of one data set and mask seed. Methods never see this object."""

    masked_counts: sp.csr_matrix
    mcv_train: sp.csr_matrix
    mcv_test: sp.csr_matrix
    rows: np.ndarray
    cols: np.ndarray
    heldout_truth: np.ndarray
    cell_ids: np.ndarray
    labels: Optional[np.ndarray] = None
    truth_counts: Any = None
    truth_mean: Any = None
    seed: int = 0
    _clusters_before: dict = field(default_factory=dict, repr=False)
    _floor: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def size_factors(self) -> np.ndarray:
        return size_factors(self.masked_counts)

    @property
    def depth_floor(self) -> np.ndarray:
        """``gene_depth``'s estimate at the held-out entries, made once and shared by every method."""
        if self._floor is None:
            self._floor = metrics.depth_floor(self.masked_counts, self.rows, self.cols)
        return self._floor

    @property
    def input_lognorm(self) -> np.ndarray:
        return np.asarray(lognorm(self.masked_counts, self.size_factors).toarray())

    def clusters_before(self, n_pcs: int = 50, n_neighbors: int = 15) -> Optional[np.ndarray]:
        """Leiden clusters of the unimputed input, computed once per setting and shared by every method."""
        if self.labels is None:
            return None
        key = (n_pcs, n_neighbors)
        if key not in self._clusters_before:
            n_target = int(np.unique(self.labels).size)
            self._clusters_before[key] = metrics.cluster_labels(
                self.input_lognorm, n_target, seed=self.seed, n_pcs=n_pcs, n_neighbors=n_neighbors
            )
        return self._clusters_before[key]


def derived_labels(processed: ad.AnnData) -> bool:
    """Whether the cell labels were made by clustering the counts themselves (``uns["label_source"]``)."""
    return str(processed.uns.get("label_source", "")).startswith("derived")


def build_evaluation_data(
    processed: ad.AnnData,
    heldout_mask: sp.spmatrix,
    mcv_train: sp.spmatrix,
    mcv_test: sp.spmatrix,
    seed: int = 0,
) -> EvaluationData:
    """Assemble the evaluation side from the processed (unmasked) data and the masks."""
    counts = sp.csr_matrix(processed.layers["counts"])
    masked = masks.apply_mask(counts, heldout_mask)
    rows, cols, values = masks.masked_values(counts, heldout_mask)
    # A held-out count is scored as a share of its cell's whole (unmasked) library: the composition
    # the cell really had. With the masked library instead, the truth would carry the same
    # mis-scaling as an output that fills zeros without renormalising, and hide it.
    library = size_factors(counts)
    truth = np.log1p(values / library[rows] * 1e4)
    label_key = processed.uns.get("label_key") or None
    labels = processed.obs[label_key].astype(str).to_numpy() if label_key else None
    if labels is not None and derived_labels(processed):
        log.warning("ARI is scored against %s, labels derived by clustering these same counts (%s): "
                    "circular, it favours no imputation", label_key, processed.uns["label_source"])
    truth_counts = processed.layers.get("true_counts")
    truth_mean = processed.layers.get("true_mean")
    return EvaluationData(
        masked_counts=masked,
        mcv_train=sp.csr_matrix(mcv_train),
        mcv_test=sp.csr_matrix(mcv_test),
        rows=rows,
        cols=cols,
        heldout_truth=truth,
        cell_ids=processed.obs_names.to_numpy(),
        labels=labels,
        truth_counts=truth_counts,
        truth_mean=truth_mean,
        seed=seed,
    )


@dataclass
class MethodScores:
    metrics: dict[str, float]
    per_cell: pd.DataFrame
    clusters_after: Optional[np.ndarray]


def score_method(
    data: EvaluationData,
    imputed: np.ndarray,
    denoised_mcv: Optional[np.ndarray],
    evaluation: EvaluationParams | dict | None = None,
) -> MethodScores:
    """Every metric of one method.

    Parameters
    ----------
    data
        From :func:`build_evaluation_data`.
    imputed
        The method's output on ``data.masked_counts``, lognorm space, cells x genes.
    denoised_mcv
        The method's output on ``data.mcv_train`` (None skips MCV).
    """
    params = parse("evaluation", evaluation)
    imputed = np.asarray(imputed, dtype=np.float64)
    if imputed.shape != data.masked_counts.shape:
        raise ValueError(f"imputed matrix is {imputed.shape}, the masked counts are {data.masked_counts.shape}")
    library = np.asarray(data.masked_counts.sum(axis=1)).ravel()
    scores: dict[str, float] = dict(metrics.heldout_scores(imputed, data.heldout_truth, data.rows, data.cols, library,
                                                           floor=data.depth_floor))
    if denoised_mcv is not None:
        scores.update(metrics.mcv_scores(denoised_mcv, data.mcv_train, data.mcv_test))

    clusters_after = None
    before = data.clusters_before(params.n_pcs, params.n_neighbors)
    if before is not None:
        clustering, _, clusters_after = metrics.clustering_scores(
            None, imputed, data.labels, seed=params.seed, n_pcs=params.n_pcs,
            n_neighbors=params.n_neighbors, clusters_before=before,
        )
        scores.update(clustering)
    else:
        log.warning("No cell labels (input.label_key): ARI is skipped")

    if data.truth_counts is not None and data.truth_mean is not None:
        scores.update(
            metrics.truth_scores(
                imputed, data.truth_counts, data.truth_mean,
                max_genes_corr=params.max_genes_corr, seed=params.seed, heldout=(data.rows, data.cols),
            )
        )
    return MethodScores(scores, per_cell_table(data, imputed, before, clusters_after), clusters_after)


def per_cell_table(
    data: EvaluationData,
    imputed: np.ndarray,
    clusters_before: Optional[np.ndarray],
    clusters_after: Optional[np.ndarray],
) -> pd.DataFrame:
    """One row per cell: label, clusters, entries filled, held-out reconstruction error."""
    n_cells = imputed.shape[0]
    input_zero = np.ones(imputed.shape, dtype=bool)
    input_zero[data.masked_counts.nonzero()] = False
    filled = (input_zero & (imputed >= FILLED_MIN)).sum(axis=1)
    sq_err = (imputed[data.rows, data.cols] - data.heldout_truth) ** 2
    n_held = np.bincount(data.rows, minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        rmse = np.sqrt(np.bincount(data.rows, weights=sq_err, minlength=n_cells) / n_held)
    return pd.DataFrame(
        {
            "cell_id": data.cell_ids,
            "label": data.labels if data.labels is not None else pd.NA,
            "cluster_before": clusters_before if clusters_before is not None else pd.NA,
            "cluster_after": clusters_after if clusters_after is not None else pd.NA,
            "n_zeros_in_input": input_zero.sum(axis=1),
            "n_filled": filled,
            "n_heldout": n_held,
            "heldout_rmse": rmse,
        }
    )
