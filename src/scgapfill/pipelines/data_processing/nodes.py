"""Nodes of the data_processing pipeline: each unpacks its parameters and calls the package."""

from __future__ import annotations

import anndata as ad

from scgapfill.data import io, preprocessing


def load_counts(input_params: dict) -> ad.AnnData:
    """Read the counts named by ``input.path`` (embedded data, simulation or a user file)."""
    return io.load_input(input_params)


def quality_control(counts: ad.AnnData, qc: dict) -> ad.AnnData:
    return preprocessing.quality_control(counts, qc)


def normalize(adata: ad.AnnData, normalize_params: dict) -> ad.AnnData:
    return preprocessing.normalize(adata, normalize_params)


def select_genes(adata: ad.AnnData, hvg: dict) -> ad.AnnData:
    return preprocessing.select_genes(adata, hvg)
