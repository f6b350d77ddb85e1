"""Inference against a fixed reference of cells: memory that does not grow with the number of cells.

Chunked inference of a ``.h5ad`` with at most ``inference.reference_cells`` cells builds the cell
graph over every cell (:class:`scgapfill.infer.streaming.StreamedImputation`): it holds every cell's sparse
counts and the kNN graph. Above that size the graph is built against a fixed random sample of the
cells, the reference, as a new cell is mapped onto an atlas: the PCA is fitted on the reference,
each chunk's cells are projected into it and their neighbours searched among the reference's
(:class:`scgapfill.graph.cellgraph.ReferenceIndex`), the context averages the reference's counts and the
output smoothing its cells' estimates. Memory then holds the reference, one chunk and one number per
cell (the annotations, the size factors), whatever the number of cells; the file is read twice
(once to check it and draw the reference, once to impute it) and the result written chunk by chunk,
``X`` and ``layers["counts"]`` included.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scgapfill.infer.imputation import (IN_MEMORY_CHUNK_CELLS, LognormRows, NetworkInputs, delivered, imputation_record,
                         predict_chunk)
from scgapfill.data.normalization import counts_from_lognorm
from scgapfill.graph.smoothing import observed_kept
from scgapfill.infer.streaming import aligned_chunks, cells_with_counts, create_dense_layers, read_obs
from scgapfill.params import ImputeParams, parse

log = logging.getLogger(__name__)

# Up to this many reference cells the neighbours are searched exactly: brute force then costs ~0.3 s per
# 10,000 cells on one CPU thread (3.3 s at 50,000), less than pynndescent's one-off compilation.
EXACT_SEARCH_MAX_CELLS = 5_000
COUNTS_BLOCK_ROWS = 1024  # cells per block of the counts-scale layer (the rows of one stored chunk of it)


def spatial_refused(context_graph: str, n_cells: int, reference_cells: int) -> ValueError:
    """The one line for a model whose context is the tissue's given more cells than a reference imputes
    whole: the reference's neighbours are found in expression, never among the spots of a section."""
    return ValueError(f"model.context_graph={context_graph!r}: inference of {n_cells} cells, above "
                      f"inference.reference_cells={reference_cells}, maps cells onto a reference in expression "
                      "space and reads no spot positions; set inference.reference_cells above the number of "
                      "spots (the graph then spans them all) or impute in memory with GapFill.impute(adata)")


@dataclass
class BackedCounts:
    """A ``.h5ad`` too large for the graph over every cell: read again chunk by chunk when imputed.

    ``kept`` are the file's rows with counts on the model's genes (the others are skipped, as in
    memory), ``obs`` their annotations, ``totals`` their counts on the model's genes, ``reference``
    the reference cells' counts and ``reference_rows`` their places among the kept cells.
    """

    path: Path
    model_genes: list[str]
    chunk_size: int
    kept: np.ndarray
    obs: pd.DataFrame
    totals: np.ndarray
    reference: sp.csr_matrix
    reference_rows: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.kept), len(self.model_genes)

    def chunks(self) -> Iterator[tuple[slice, sp.csr_matrix]]:
        """``(rows among the kept cells, their counts)``, one chunk of the file at a time."""
        done = 0
        for start, counts, _ in aligned_chunks(self.path, self.model_genes, self.chunk_size):
            stop = start + counts.shape[0]
            rows = self.kept[(self.kept >= start) & (self.kept < stop)] - start
            if rows.size:
                yield slice(done, done + rows.size), counts[rows]
                done += rows.size


def read_with_reference(
    path: str | Path, obs: pd.DataFrame | None, model_genes: list[str], chunk_size: int, reference_cells: int,
    seed: int,
) -> tuple[BackedCounts, dict]:
    """Check a ``.h5ad``'s counts chunk by chunk and keep only a random ``reference_cells`` of them.

    ``obs`` is the file's :func:`~scgapfill.infer.streaming.read_obs` (``None``: read here). The reference is
    drawn with ``seed`` among the file's rows before reading (so in one pass); rows without counts on
    the model's genes are dropped from it, as from the output.
    Returns the :class:`BackedCounts` and the gene alignment report.
    """
    path = Path(path)
    obs = read_obs(path) if obs is None else obs
    n_rows = len(obs)
    drawn = np.sort(np.random.default_rng(seed).choice(n_rows, size=min(reference_cells, n_rows), replace=False))
    totals, reference, report = np.empty(n_rows), [], {}
    for start, counts, report in aligned_chunks(path, model_genes, chunk_size):
        stop = start + counts.shape[0]
        totals[start:stop] = np.asarray(counts.sum(axis=1)).ravel()
        in_chunk = drawn[(drawn >= start) & (drawn < stop)]
        reference.append(counts[in_chunk[totals[in_chunk] > 0] - start])
    kept = np.flatnonzero(cells_with_counts(totals, obs, path, report))
    drawn = drawn[totals[drawn] > 0]
    backed = BackedCounts(
        path=path, model_genes=list(model_genes), chunk_size=chunk_size, kept=kept, obs=obs.iloc[kept].copy(),
        totals=totals[kept], reference=sp.csr_matrix(sp.vstack(reference, format="csr"), dtype=np.float32),
        reference_rows=np.searchsorted(kept, drawn),
    )
    log.info("%d cells: the cell graph is built against a reference of %d of them (inference.reference_cells)",
             kept.size, len(drawn))
    return backed, report


class _Reference:
    """What every chunk reads: the reference's PCA, neighbour indices, counts and (for the output
    smoothing) its cells' estimates; built once, a fixed size whatever the number of cells."""

    def __init__(self, bundle: Any, counts: sp.csr_matrix, params: ImputeParams, predict: Any) -> None:
        from scgapfill.graph.cellgraph import CountsPerTarget, ReferenceIndex, context_source, pca_embedding

        model = bundle.model
        self.params, self.steps, self.k = params, model.context_steps, model.context_k
        self.size_factors = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
        self.values = LognormRows(counts, self.size_factors)
        self.n_cells = counts.shape[0]
        self.context_channel = model.context_channel
        embedding, self.pca = pca_embedding(self.values[:], model.context_n_pcs, bundle.train.seed)
        self.input_index = ReferenceIndex(embedding, self.k, bundle.train.seed, EXACT_SEARCH_MAX_CELLS)
        self.graph = self.input_index.graph(embedding, np.arange(self.n_cells))
        self.space, self.source = model.context_space, None
        if model.context_channel:  # what the context averages: the reference's cells only
            self.source = (CountsPerTarget(counts, self.size_factors) if self.space == "counts"
                           else context_source(self.values[:], self.space))
        self.levels = self.imputed_index = None
        if params.output_smoothing:
            own = np.arange(self.n_cells)
            self.levels = np.empty((self.n_cells, counts.shape[1]), dtype=np.float32)  # filled in place: one copy
            embedded = []
            for start in range(0, self.n_cells, IN_MEMORY_CHUNK_CELLS):
                rows = slice(start, min(start + IN_MEMORY_CHUNK_CELLS, self.n_cells))
                estimate = predict(self.inputs(self.values.counts[rows], own[rows]))
                if params.smoothing_neighbours == "imputed":
                    embedded.append(self._embed(self.values[rows], estimate))
                np.expm1(estimate, out=self.levels[rows])
            if embedded:
                embedded = np.vstack(embedded)
                self.imputed_index = ReferenceIndex(embedded, self.k, bundle.train.seed, EXACT_SEARCH_MAX_CELLS)

    def _embed(self, values: sp.csr_matrix, estimate: np.ndarray) -> np.ndarray:
        """An estimate, observed counts kept, in the input's principal components (the output smoothing's
        neighbours are found on the estimates, as in memory)."""
        return self.pca.transform(observed_kept(values, estimate.copy()))

    def inputs(self, counts: sp.csr_matrix, own: np.ndarray) -> Any:
        """The network's inputs for cells ``counts`` (``own``: their places in the reference, -1 outside it)."""
        from scgapfill.graph.cellgraph import walk_on

        sf = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
        values = LognormRows(counts, sf)
        inputs = NetworkInputs(values=values, space=self.space)
        if self.context_channel:
            first = self.input_index.graph(self.pca.transform(values[:]), own)
            inputs.walk = walk_on(first, self.graph, self.steps, own)  # the chunk's rows, read by slicing
            inputs.source = self.source
        return inputs

    def smoothed(self, values: sp.csr_matrix, estimate: np.ndarray, own: np.ndarray) -> np.ndarray:
        """``(1 - w) * own + w * mean of the k nearest reference cells' estimates``, in log1p."""
        if self.imputed_index is not None:
            graph = self.imputed_index.graph(self._embed(values, estimate), own)
        else:
            graph = self.input_index.graph(self.pca.transform(values), own)
        weight = self.params.output_smoothing
        # In float32 and in place: a float64 graph would make scipy copy every reference estimate to
        # float64, and each float64 temporary is twice a chunk's float32 output (10,240 x 2,000: 164 MB).
        mixed = graph.astype(np.float32) @ self.levels
        mixed *= weight
        own_levels = np.expm1(estimate)
        own_levels *= 1 - weight
        mixed += own_levels
        return np.log1p(mixed, out=mixed)


class ReferenceImputation:
    """The imputation of a :class:`BackedCounts`, computed and written chunk by chunk when saved.

    The same file layout as :class:`~scgapfill.infer.streaming.StreamedImputation` (``X`` log-normalised,
    ``layers["counts"]``, ``["imputed"]``, ``["imputed_counts"]``); ``uns["gapfill"]["reference_cells"]``
    says how many cells the graph was built against.
    """

    def __init__(self, bundle: Any, backed: BackedCounts, params: ImputeParams | dict | None = None,
                 report: dict | None = None) -> None:
        self.bundle = bundle
        self.backed = backed
        self.params = bundle.impute if params is None else parse("impute", params)
        self.report = report or {"n_model_genes": len(bundle.gene_names), "n_missing": 0}
        self.shape = backed.shape

    def write_h5ad(self, path: str | Path, compression: str | None = None, **kwargs: Any) -> None:
        import torch

        from scgapfill.train.data import GeneScaler

        bundle, backed, params = self.bundle, self.backed, self.params
        if params.anomaly:
            log.info("No anomaly score for data imputed against a reference (more cells than "
                     "inference.reference_cells): impute in memory for obs['gapfill_anomaly']")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        net = bundle.build_network().to(device)
        scaler = GeneScaler.from_dict(bundle.scaler)

        def predict(inputs: Any) -> np.ndarray:
            every_cell = slice(0, inputs.values.shape[0])
            return predict_chunk(net, bundle, scaler, inputs, every_cell, params.batch_size, device)

        reference = _Reference(bundle, backed.reference, params, predict)
        own_place = np.full(self.shape[0], -1)
        own_place[backed.reference_rows] = np.arange(len(backed.reference_rows))
        self._skeleton(len(backed.reference_rows)).write_h5ad(path, compression=compression, **kwargs)
        dataset_kwargs = {"compression": compression} if compression else {}
        with h5py.File(path, "a") as handle:
            layers = create_dense_layers(handle, self.shape, backed.chunk_size, compression)
            for rows, counts in backed.chunks():
                own = own_place[rows]
                inputs = reference.inputs(counts, own)
                values = inputs.values[:]
                out = predict(inputs)
                if params.output_smoothing:
                    out = reference.smoothed(values, out, own)
                out = delivered(values, out, params, inputs.values.size_factors)
                self._append(handle, rows, values, counts, dataset_kwargs)
                layers["imputed"][rows] = out
                sf = inputs.values.size_factors
                for block in range(0, out.shape[0], COUNTS_BLOCK_ROWS):  # its float64 work in small blocks
                    part = slice(block, block + COUNTS_BLOCK_ROWS)
                    target = slice(rows.start + block, min(rows.start + block + COUNTS_BLOCK_ROWS, rows.stop))
                    layers["imputed_counts"][target] = counts_from_lognorm(out[part], sf[part]).astype(np.float32)
                log.info("imputed cells %d..%d of %d", rows.start, rows.stop - 1, self.shape[0])

    @staticmethod
    def _append(handle: h5py.File, rows: slice, values: sp.csr_matrix, counts: sp.csr_matrix, kwargs: dict) -> None:
        """The chunk's log-normalised values and counts, appended to ``X`` and ``layers["counts"]``."""
        for group, name, matrix in ((handle, "X", values), (handle["layers"], "counts", counts)):
            matrix = sp.csr_matrix(matrix, dtype=np.float32)
            if rows.start == 0:
                ad.io.write_elem(group, name, matrix, dataset_kwargs=kwargs)
            else:
                ad.io.sparse_dataset(group[name]).append(matrix)

    def _skeleton(self, n_reference: int) -> ad.AnnData:
        """Everything but the matrices: the cells' annotations and size factors, the genes, the record."""
        obs = self.backed.obs.copy()
        obs["size_factor"] = self.backed.totals
        var = pd.DataFrame(index=pd.Index([str(g) for g in self.bundle.gene_names]))
        adata = ad.AnnData(obs=obs, var=var)
        adata.uns["gapfill"] = {**imputation_record(self.params, self.report), "layer": "imputed",
                                "counts_layer": "imputed_counts", "chunk_size": int(self.backed.chunk_size),
                                "reference_cells": int(n_reference)}
        return adata
