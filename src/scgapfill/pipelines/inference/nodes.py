"""Nodes of the inference pipeline: a saved model applied to new counts, genes aligned by name."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scgapfill.params import parse

log = logging.getLogger(__name__)


def load_model(model: dict):
    """The bundle named by ``model.uri`` (MLflow URI or .pt path), read weights-only."""
    from scgapfill.tracking import load_bundle

    return load_bundle(parse("model", model).uri)


def align_to_model(new_counts: ad.AnnData, inference_model) -> tuple[ad.AnnData, dict]:
    """Counts on the model's genes, in its order: missing genes are zero (unobserved), extra genes dropped."""
    from scgapfill.impute import align_genes

    aligned, report = align_genes(new_counts.X, list(new_counts.var_names), inference_model.gene_names)
    totals = np.asarray(aligned.sum(axis=1)).ravel()
    empty = totals == 0
    if empty.all():
        raise ValueError("no cell has counts on the model's genes; is input.path the right data set?")
    if empty.any():
        log.warning("%d cells have no counts on the model's genes and are skipped: %s",
                    int(empty.sum()), list(new_counts.obs_names[empty][:5]))
    report["cells_skipped_no_counts"] = int(empty.sum())
    kept = ~empty
    out = ad.AnnData(
        X=sp.csr_matrix(aligned[kept], dtype=np.float32),
        obs=new_counts.obs.loc[kept].copy(),
        var=ad.AnnData(np.zeros((0, len(inference_model.gene_names)))).var.set_axis(inference_model.gene_names),
    )
    log.info("Gene alignment: %s", {k: v for k, v in report.items() if not isinstance(v, list)})
    return out, report


def impute_new(inference_model, aligned: ad.AnnData, impute: dict) -> ad.AnnData:
    """Same output format as training: layer ``imputed`` in log1p(counts / size_factor * 1e4)."""
    from scgapfill.impute import impute_counts
    from scgapfill.normalization import lognorm, size_factors

    params = parse("impute", impute)
    counts = sp.csr_matrix(aligned.X)
    sf = size_factors(counts)
    out = ad.AnnData(X=sp.csr_matrix(lognorm(counts, sf), dtype=np.float32), obs=aligned.obs.copy(),
                     var=aligned.var.copy(), layers={"counts": counts})
    out.obs["size_factor"] = sf
    out.layers["imputed"] = impute_counts(
        inference_model, counts, batch_size=params.batch_size, fill_only_zeros=params.fill_only_zeros
    ).astype(np.float32)
    out.uns["imputation"] = {"method": "scgapfill-unet", "space": "log1p(counts / size_factor * 1e4)",
                             "fill_only_zeros": params.fill_only_zeros}
    return out
