"""Nodes of the inference pipeline: a saved model applied to new counts, genes aligned by name."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from scgapfill.params import parse

log = logging.getLogger(__name__)


def load_model(inference: dict, impute: dict):
    """The model named by ``inference.uri`` (MLflow URI, folder or .pt file), read weights-only,
    imputing with this run's ``impute.*`` settings."""
    from scgapfill.model import GapFill
    from scgapfill.model.loading import load_bundle

    # Not GapFill.load: its errors name the Python call, these name the parameter the user set.
    return GapFill.from_bundle(load_bundle(parse("inference", inference).uri), impute=parse("impute", impute))


def load_aligned_counts(input_params: dict, inference_model, inference: dict) -> tuple[dict, dict]:
    """Counts on the model's genes, in its order: missing genes are zero (unobserved), extra genes dropped.

    A ``.h5ad`` is read in backed mode ``inference.chunk_size`` cells at a time; other inputs
    (or ``chunk_size: 0``) are read whole. Cells without a count on the model's genes are skipped.
    A ``.h5ad`` of more than ``inference.reference_cells`` cells is only checked here and a reference
    of that many kept (:mod:`scgapfill.infer.reference`): it is read again, chunk by chunk, when imputed.
    Spot coordinates and images (``obsm``/``uns["spatial"]``) come along as ``aligned["spots"]``.
    """
    from scgapfill.data import io
    from scgapfill.graph.spatial import spots_of
    from scgapfill.infer.imputation import align_genes, warn_missing_genes
    from scgapfill.infer.reference import read_with_reference, spatial_refused
    from scgapfill.infer.streaming import read_aligned_counts_backed, read_obs, read_spots
    from scgapfill.glue.tracking import log_metric_if_tracking

    path = parse("input", input_params).path.strip()
    settings = parse("inference", inference)
    chunk_size = settings.chunk_size
    genes = list(inference_model.gene_names)
    chunked = bool(chunk_size) and Path(path).suffix == ".h5ad"
    obs = read_obs(path) if chunked and settings.reference_cells else None
    if obs is not None and settings.reference_cells < len(obs):
        graph = inference_model.bundle.model.context_graph
        if graph != "expression":  # refused before the file is read through
            raise spatial_refused(graph, len(obs), settings.reference_cells)
        seed = inference_model.bundle.train.seed
        backed, report = read_with_reference(path, obs, genes, chunk_size, settings.reference_cells, seed)
        aligned = {"counts": backed, "obs": backed.obs}
    else:
        if chunked:
            counts, obs, report = read_aligned_counts_backed(path, genes, chunk_size)
            spots = read_spots(path)
        else:
            new_counts = io.load_input(input_params)
            counts, report = align_genes(new_counts.X, list(new_counts.var_names), genes)
            obs, spots = new_counts.obs.copy(), spots_of(new_counts)
        aligned = _with_counts(counts, obs, spots, path, report)
    report["missing_gene_share"] = warn_missing_genes(report)
    log_metric_if_tracking("inference_missing_gene_share", report["missing_gene_share"])
    log.info("Gene alignment: %s", {k: v for k, v in report.items() if not isinstance(v, list)})
    return aligned, report


def _with_counts(counts: sp.csr_matrix, obs, spots, path: str, report: dict) -> dict:
    """The cells with counts on the model's genes (the others skipped, with a warning), and their spots."""
    from scgapfill.infer.streaming import cells_with_counts

    kept = cells_with_counts(np.asarray(counts.sum(axis=1)).ravel(), obs, path, report)
    return {"counts": sp.csr_matrix(counts[kept], dtype=np.float32), "obs": obs.loc[kept].copy(),
            "spots": None if spots is None else spots[np.asarray(kept)].copy()}


def impute_new(inference_model, aligned: dict, gene_alignment_report: dict, inference: dict):
    """Same output format as training (layer ``imputed`` in log1p(counts / size_factor * 1e4)),
    computed and written ``inference.chunk_size`` cells at a time by the catalog's AnnDataDataset."""
    chunk_size = parse("inference", inference).chunk_size or None
    return inference_model.streamed(aligned["counts"], aligned["obs"], chunk_size, gene_alignment_report,
                                    aligned.get("spots"))
