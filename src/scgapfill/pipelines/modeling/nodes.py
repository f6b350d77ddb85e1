"""Nodes of the modeling pipeline.

The nodes that lay out, train and score read only ``masked``, ``mcv_train`` and what they made
from them: never the held-out values (tests/pipelines/test_heldout_isolation.py). The deliverable
node alone reads every processed count, and nothing in evaluation reads its output.
"""

from __future__ import annotations

import logging
import time

import anndata as ad
import numpy as np
import scipy.sparse as sp
from matplotlib.figure import Figure

from scgapfill.data.normalization import lognorm
from scgapfill.graph.spatial import carry_spatial
from scgapfill.params import parse

log = logging.getLogger(__name__)


def compute_gene_layout(masked: ad.AnnData, layout_params: dict, model_params: dict) -> dict:
    """Place the genes on a grid whose sides the U-Net can halve ``model.depth`` times.

    Learned from the masked counts, so the held-out values cannot reach the model even
    through the gene order.
    """
    from scgapfill.model import compute_gene_layout as layout_for

    return layout_for(masked.X, list(masked.var_names), parse("layout", layout_params),
                      parse("model", model_params).depth)


def _check_genes(adata: ad.AnnData, layout: dict) -> None:
    if list(adata.var_names) != list(layout["genes"]):
        raise ValueError(
            "the gene layout does not match the data's genes; rerun the modeling pipeline so that "
            "gene_layout is computed from the same genes"
        )


def _summary(gapfill, seconds: float, adata: ad.AnnData) -> dict:
    bundle = gapfill.bundle
    return {
        "seconds_total": seconds,
        "seconds_per_epoch": float(bundle.seconds_per_epoch),
        "cells_per_s": float(bundle.cells_per_s),
        "best_epoch": int(bundle.best_epoch),
        "epochs": int(len(bundle.history)),
        "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
        "grid": list(bundle.layout["shape"]),
        **{k: v for k, v in bundle.info.items() if isinstance(v, (int, float, str))},
    }


def train_model(mcv_train: ad.AnnData, gene_layout: dict, model: dict, train: dict, impute: dict):
    """Fit the U-Net on the molecules of the MCV train split of the masked counts.

    Training on the MCV train split (not all masked counts) keeps the MCV test molecules
    unseen as well, so both the held-out and the MCV scores come from one trained model.
    """
    from scgapfill.model import GapFill
    from scgapfill.glue.tracking import active_run_logger

    _check_genes(mcv_train, gene_layout)
    start = time.perf_counter()
    gapfill = GapFill(model=model, train=train, impute=impute)
    gapfill.fit(mcv_train, layer="counts", gene_layout=gene_layout, logger=active_run_logger())
    summary = _summary(gapfill, time.perf_counter() - start, mcv_train)
    log.info("Training: %d epochs in %.1f s (%.2f s/epoch, %.0f cells/s), best epoch %d", summary["epochs"],
             summary["seconds_total"], summary["seconds_per_epoch"], summary["cells_per_s"], summary["best_epoch"])
    return gapfill, summary


def loss_curve_figure(gapfill_model) -> Figure:
    from scgapfill.eval.plots import loss_curves

    return loss_curves(gapfill_model.history)


def _with_settings(gapfill_model, impute: dict):
    """The trained model with this run's ``impute.*`` settings (they act at imputation, not training)."""
    from scgapfill.model import GapFill

    return GapFill.from_bundle(gapfill_model.bundle, impute=parse("impute", impute))


def impute_masked(gapfill_model, masked: ad.AnnData, impute: dict) -> ad.AnnData:
    """The masked copy imputed, for scoring: layer ``imputed`` as in the deliverable (``impute.scale``)."""
    _check_genes(masked, gapfill_model.bundle.layout)
    return _with_settings(gapfill_model, impute).impute(masked, layer="counts", inplace=False)


def denoise_mcv_train(gapfill_model, mcv_train: ad.AnnData, impute: dict) -> ad.AnnData:
    """The MCV train split denoised by the model (scored against ``mcv_test`` by evaluation)."""
    values, _, _ = _with_settings(gapfill_model, impute).impute_matrix(mcv_train, layer="counts")
    return ad.AnnData(X=values, obs=mcv_train.obs[[]].copy(), var=mcv_train.var[[]].copy())


def impute_all(gapfill_model, normalized: ad.AnnData, impute: dict, final: dict, train: dict,
               layout_params: dict, normalize_params: dict) -> ad.AnnData:
    """The deliverable: the trained model applied to every processed count, nothing hidden.

    Every cell and gene that passed QC, in input order: ``layers["counts"]`` the QC'd counts,
    ``X`` their log-normalisation, ``layers["imputed"]`` on the same scale (the modelled genes
    imputed, the others averaged over each cell's nearest cells as ``impute.unmodelled`` says;
    ``var["gapfill_modelled"]``), and the input's ``obsm["spatial"]`` and ``uns["spatial"]`` where it has
    them. With ``final.refit`` the model is first trained again on all the
    processed counts of its genes.
    """
    from scgapfill.model import GapFill

    gapfill = _with_settings(gapfill_model, impute)
    if parse("final", final).refit:
        genes = list(gapfill.gene_names)
        fresh = GapFill(model=gapfill.model_params, train=train, impute=gapfill.impute_params, layout=layout_params)
        gapfill = fresh.fit(normalized[:, genes].copy(), layer="counts")
        log.info("final.refit: trained again on all %d cells x %d genes", normalized.n_obs, len(genes))
    counts = sp.csr_matrix(normalized.layers["counts"], dtype=np.float32)
    sf = normalized.obs["size_factor"].to_numpy(dtype=np.float64)
    target_sum = parse("normalize", normalize_params).target_sum
    out = ad.AnnData(
        # The package's log-normalisation of the same counts: observed entries of `imputed` equal it exactly.
        X=sp.csr_matrix(lognorm(counts, sf, target_sum), dtype=np.float32),
        obs=normalized.obs.copy(),
        var=normalized.var.copy(),
        layers={"counts": counts},
    )
    out.uns["normalize"] = {"target_sum": target_sum}
    carry_spatial(normalized, out)  # spatial data stays drawable with scanpy.pl.spatial
    gapfill.impute(out, layer="counts", key_added="imputed", inplace=True)
    out.uns["gapfill"]["refit"] = parse("final", final).refit
    log.info("Deliverable: %d cells x %d genes, %d of them imputed by the model",
             out.n_obs, out.n_vars, int(out.var["gapfill_modelled"].sum()))
    if "gapfill_anomaly_flag" in out.obs:
        log.info("Anomaly score: %d of %d cells flagged (obs['gapfill_anomaly'] >= 3; docs/anomaly.md)",
                 int(out.obs["gapfill_anomaly_flag"].sum()), out.n_obs)
    return out


# Cells in the MLflow model's input example: enough for the neighbour-context channel
# (model.context_k neighbours are looked up among them).
INPUT_EXAMPLE_CELLS = 20


def log_model(gapfill_model, masked: ad.AnnData) -> dict:
    """Log and register the model in the active MLflow run (a no-op without one).

    The input example MLflow stores with the model (and predicts on at logging time) is
    synthetic: Poisson draws around the genes' mean counts, so no real cell of the user's
    data is copied into the tracking store.
    """
    import pandas as pd

    from scgapfill.glue.tracking import log_gapfill_model

    _check_genes(masked, gapfill_model.bundle.layout)
    gene_means = np.asarray(sp.csr_matrix(masked.layers["counts"]).mean(axis=0)).ravel()
    draws = np.random.default_rng(0).poisson(gene_means, size=(INPUT_EXAMPLE_CELLS, gene_means.size))
    empty = draws.sum(axis=1) == 0
    draws[empty, int(np.argmax(gene_means))] = 1  # every example cell needs a size factor
    example = pd.DataFrame(
        draws.astype(np.float32),
        index=[f"example{i}" for i in range(INPUT_EXAMPLE_CELLS)],
        columns=masked.var_names,
    )
    return log_gapfill_model(gapfill_model.bundle, input_example=example)
