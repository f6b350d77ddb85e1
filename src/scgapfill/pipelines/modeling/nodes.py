"""Nodes of the modeling pipeline. They read only ``mcv_train``, ``masked`` and ``gene_layout``:
never the held-out values (tests/pipelines/test_heldout_isolation.py)."""

from __future__ import annotations

import logging
import time

import anndata as ad
import numpy as np
import scipy.sparse as sp
from matplotlib.figure import Figure

from scgapfill.params import parse

log = logging.getLogger(__name__)


def _check_genes(adata: ad.AnnData, layout: dict) -> None:
    if list(adata.var_names) != list(layout["genes"]):
        raise ValueError(
            "the gene layout does not match the data's genes; rerun data_processing so that "
            "gene_layout is computed from the same genes"
        )


def train_model(mcv_train: ad.AnnData, gene_layout: dict, model: dict, train: dict):
    """Fit the U-Net on the molecules of the MCV train split of the masked counts.

    Training on the MCV train split (not all masked counts) keeps the MCV test molecules
    unseen as well, so both the held-out and the MCV scores come from one trained model.
    """
    from scgapfill.tracking import active_run_logger
    from scgapfill.train.fit import fit_gapfill

    _check_genes(mcv_train, gene_layout)
    start = time.perf_counter()
    bundle = fit_gapfill(
        mcv_train.layers["counts"], gene_layout, parse("model", model), parse("train", train),
        logger=active_run_logger(),
    )
    seconds = time.perf_counter() - start
    summary = {
        "seconds_total": seconds,
        "seconds_per_epoch": float(bundle.seconds_per_epoch),
        "cells_per_s": float(bundle.cells_per_s),
        "best_epoch": int(bundle.best_epoch),
        "epochs": int(len(bundle.history)),
        "n_cells": int(mcv_train.n_obs),
        "n_genes": int(mcv_train.n_vars),
        "grid": list(gene_layout["shape"]),
        **{k: v for k, v in bundle.info.items() if isinstance(v, (int, float, str))},
    }
    log.info("Training: %d epochs in %.1f s (%.2f s/epoch, %.0f cells/s), best epoch %d",
             summary["epochs"], seconds, summary["seconds_per_epoch"], summary["cells_per_s"], summary["best_epoch"])
    return bundle, summary


def loss_curve_figure(gapfill_model) -> Figure:
    from scgapfill.plots import loss_curves

    return loss_curves(gapfill_model.history)


def _impute(bundle, counts: sp.csr_matrix, impute: dict) -> np.ndarray:
    from scgapfill.imputation import impute_counts

    params = parse("impute", impute)
    return impute_counts(bundle, counts, batch_size=params.batch_size, fill_only_zeros=params.fill_only_zeros)


def impute_masked(gapfill_model, masked: ad.AnnData, impute: dict) -> ad.AnnData:
    """Every cell of the masked data, imputed: layer ``imputed`` in log1p(counts / size_factor * 1e4)."""
    _check_genes(masked, gapfill_model.layout)
    out = masked.copy()
    out.layers["imputed"] = _impute(gapfill_model, masked.layers["counts"], impute).astype(np.float32)
    out.uns["imputation"] = {"method": "scgapfill-unet", "space": "log1p(counts / size_factor * 1e4)",
                             "fill_only_zeros": parse("impute", impute).fill_only_zeros}
    return out


def denoise_mcv_train(gapfill_model, mcv_train: ad.AnnData, impute: dict) -> ad.AnnData:
    """The MCV train split denoised by the model (scored against ``mcv_test`` by evaluation)."""
    values = _impute(gapfill_model, mcv_train.layers["counts"], impute)
    return ad.AnnData(X=values.astype(np.float32), obs=mcv_train.obs[[]].copy(), var=mcv_train.var[[]].copy())


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

    from scgapfill.tracking import log_gapfill_model

    _check_genes(masked, gapfill_model.layout)
    gene_means = np.asarray(sp.csr_matrix(masked.layers["counts"]).mean(axis=0)).ravel()
    draws = np.random.default_rng(0).poisson(gene_means, size=(INPUT_EXAMPLE_CELLS, gene_means.size))
    empty = draws.sum(axis=1) == 0
    draws[empty, int(np.argmax(gene_means))] = 1  # every example cell needs a size factor
    example = pd.DataFrame(
        draws.astype(np.float32),
        index=[f"example{i}" for i in range(INPUT_EXAMPLE_CELLS)],
        columns=masked.var_names,
    )
    return log_gapfill_model(gapfill_model, input_example=example)
