"""QC, normalisation and gene selection with scanpy; sparse in, sparse out."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp

from scgapfill.params import HVGParams, NormalizeParams, QCParams, parse

log = logging.getLogger(__name__)


def quality_control(adata: ad.AnnData, qc: QCParams | dict) -> ad.AnnData:
    """Remove low-quality cells and rarely seen genes; returns a new AnnData, the input is untouched."""
    params = parse("qc", qc)
    adata = adata.copy()
    n_cells, n_genes = adata.shape
    if not n_cells or not n_genes:
        raise ValueError(f"the data has {n_cells} cells x {n_genes} genes: nothing to QC; check input.path")
    adata.var["mt"] = adata.var_names.str.upper().str.startswith(params.mito_prefix.upper())
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)

    keep = adata.obs["n_genes_by_counts"].to_numpy() >= params.min_genes
    reasons = {f"qc.min_genes={params.min_genes}": int((~keep).sum())}
    if params.max_counts is not None:
        too_many = adata.obs["total_counts"].to_numpy() > params.max_counts
        reasons[f"qc.max_counts={params.max_counts:g}"] = int((too_many & keep).sum())
        keep &= ~too_many
    if params.max_pct_mito is not None:
        too_mito = adata.obs["pct_counts_mt"].to_numpy() > params.max_pct_mito
        reasons[f"qc.max_pct_mito={params.max_pct_mito:g}"] = int((too_mito & keep).sum())
        keep &= ~too_mito
    if not keep.any():
        raise ValueError(
            f"QC removed all {n_cells} cells ({reasons}); lower qc.min_genes or raise qc.max_counts / qc.max_pct_mito"
        )
    adata = adata[keep].copy()
    gene_cells = np.asarray((adata.X > 0).sum(axis=0)).ravel()
    # A gene no kept cell expresses carries nothing to learn from, yet the model would fill it with
    # a nonzero level in every cell: it goes even with qc.min_cells=0.
    gene_keep = gene_cells >= max(1, params.min_cells)
    n_unseen = int((gene_cells == 0).sum())
    if not gene_keep.any():
        raise ValueError(
            f"QC removed every gene: none has counts in {max(1, params.min_cells)} of the {int(keep.sum())} cells "
            f"QC kept (qc.min_cells={params.min_cells}; genes seen in no cell always go); lower qc.min_cells, "
            "or check that X holds the counts"
        )
    adata = adata[:, gene_keep].copy()
    for reason, removed in reasons.items():
        log.info("QC: %d cells removed by %s", removed, reason)
    log.info("QC: %d genes removed by qc.min_cells=%d (%d of them seen in no kept cell, always removed); "
             "%d x %d remain (from %d x %d)", int((~gene_keep).sum()), params.min_cells, n_unseen,
             adata.n_obs, adata.n_vars, n_cells, n_genes)
    adata.uns["qc"] = {"cells_removed": reasons, "genes_removed": int((~gene_keep).sum()),
                       "genes_unseen": n_unseen, "cells_before": n_cells, "genes_before": n_genes}
    return adata


def normalize(adata: ad.AnnData, normalize_params: NormalizeParams | dict) -> ad.AnnData:
    """Counts per ``target_sum`` then log1p in ``X``; raw counts kept in ``layers['counts']``.

    ``obs['size_factor']`` is each cell's total count, so ``X = log1p(counts / size_factor * target_sum)``.
    """
    params = parse("normalize", normalize_params)
    adata = adata.copy()
    adata.layers["counts"] = sp.csr_matrix(adata.X, copy=True)
    adata.obs["size_factor"] = np.asarray(adata.layers["counts"].sum(axis=1)).ravel().astype(np.float64)
    if (adata.obs["size_factor"] <= 0).any():
        empty = adata.obs_names[adata.obs["size_factor"] <= 0][:5].tolist()
        raise ValueError(f"cells {empty} have no counts; raise qc.min_genes above 0 to remove them")
    sc.pp.normalize_total(adata, target_sum=params.target_sum)
    sc.pp.log1p(adata)
    adata.uns["normalize"] = {"target_sum": params.target_sum}
    return adata


def select_genes(adata: ad.AnnData, hvg: HVGParams | dict) -> ad.AnnData:
    """Keep the ``n_top_genes`` most variable genes (all genes when there are fewer)."""
    params = parse("hvg", hvg)
    adata = adata.copy()
    if adata.n_vars <= params.n_top_genes:
        adata.var["highly_variable"] = True
        log.info("HVG: %d genes <= hvg.n_top_genes=%d, all kept", adata.n_vars, params.n_top_genes)
        return adata
    sc.pp.highly_variable_genes(adata, n_top_genes=params.n_top_genes, flavor=params.flavor)
    adata = adata[:, adata.var["highly_variable"].to_numpy()].copy()
    log.info("HVG: kept %d of the genes (hvg.n_top_genes=%d)", adata.n_vars, params.n_top_genes)
    return adata
