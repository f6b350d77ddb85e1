"""Nodes of the evaluation pipeline: the only nodes that read held-out values and MCV test counts."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.figure import Figure

from scgapfill.eval import plots, protocol
from scgapfill.eval.evaluate import EvaluationData, build_evaluation_data, score_method
from scgapfill.params import parse

log = logging.getLogger(__name__)

MODEL_NAME = "unet"


def prepare_evaluation(
    processed: ad.AnnData, heldout_mask: sp.spmatrix, mcv_train: ad.AnnData, mcv_test: sp.spmatrix, evaluation: dict
) -> EvaluationData:
    return build_evaluation_data(
        processed, heldout_mask, mcv_train.layers["counts"], mcv_test, seed=parse("evaluation", evaluation).seed
    )


def run_baselines(masked: ad.AnnData, mcv_train: ad.AnnData, baselines: dict) -> dict[str, dict]:
    """Each baseline imputes the masked counts and denoises the MCV train split: the U-Net's inputs."""
    return protocol.run_baselines(masked, mcv_train, parse("baselines", baselines))


def score_methods(
    data: EvaluationData,
    baseline_outputs: dict[str, dict],
    imputed_masked: ad.AnnData,
    imputed_mcv: ad.AnnData,
    training_summary: dict,
    evaluation: dict,
) -> tuple[pd.DataFrame, dict, dict, pd.DataFrame, dict[str, Figure]]:
    """Score the U-Net (its imputation of the masked copy) and every baseline; the U-Net's per-cell
    table, metrics and plots.

    Returns the comparison table (one row per method), the U-Net's metrics for MLflow,
    the same as JSON with the baselines beside it, the per-cell table and the figures.
    """
    params = parse("evaluation", evaluation)
    model_out = {
        "imputed": np.asarray(imputed_masked.layers["imputed"], dtype=np.float64),
        "mcv": np.asarray(imputed_mcv.X, dtype=np.float64),
        "seconds": float(training_summary.get("seconds_total", np.nan)),
    }
    rows, per_method = [], {}
    for name, out in {MODEL_NAME: model_out, **baseline_outputs}.items():
        result = score_method(data, out["imputed"], out["mcv"], params)
        per_method[name] = result
        rows.append({"method": name, **result.metrics, "seconds": out["seconds"]})
    table = pd.DataFrame(rows)

    model_scores = per_method[MODEL_NAME]
    mlflow_metrics = {key: {"value": float(value), "step": 0} for key, value in model_scores.metrics.items()}
    for name, result in per_method.items():
        if name != MODEL_NAME:
            mlflow_metrics.update(
                {f"{name}.{key}": {"value": float(v), "step": 0} for key, v in result.metrics.items()}
            )
    report = {
        "method": MODEL_NAME,
        "metrics": _strict_json(model_scores.metrics),
        "baselines": {name: _strict_json(r.metrics) for name, r in per_method.items() if name != MODEL_NAME},
        "n_cells": int(data.masked_counts.shape[0]),
        "n_genes": int(data.masked_counts.shape[1]),
        "n_heldout": int(data.rows.size),
    }
    figures = make_figures(data, model_out["imputed"], model_scores.clusters_after, params, imputed_masked)
    log.info("\n%s", table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return table, mlflow_metrics, report, model_scores.per_cell, figures


def _strict_json(metrics: dict[str, float]) -> dict[str, float | None]:
    """An undefined score (NaN: e.g. Pearson of a constant prediction) as null: strict JSON parsers
    refuse a bare NaN in metrics.json."""
    return {key: (float(v) if np.isfinite(v) else None) for key, v in metrics.items()}


def make_figures(data: EvaluationData, imputed: np.ndarray, clusters_after, params,
                 spots: ad.AnnData | None = None) -> dict[str, Figure]:
    """The held-out scatter always (cheap, and the plots folder the catalog logs to MLflow must not be
    empty), and where the imputed data (``spots``) carry spot positions and a tissue image the most
    spatially patterned genes on the image before and after; the UMAPs before and after unless
    ``evaluation.plots`` is false (minutes at 100k cells)."""
    figures = {
        "heldout_scatter.png": plots.heldout_scatter(
            data.heldout_truth, imputed[data.rows, data.cols], MODEL_NAME
        )
    }
    if spots is not None and "spatial" in spots.obsm and "spatial" in spots.uns:
        figures["spatial_before_after.png"] = plots.spatial_before_after(spots, plots.spatial_genes(spots))
    if not params.plots:
        return figures
    before = data.clusters_before(params.n_pcs, params.n_neighbors)
    figures["umap_before_after.png"] = plots.umap_before_after(
        data.input_lognorm, imputed, data.labels, before, clusters_after, seed=params.seed
    )
    return figures
