"""Inference at scale: read a backed ``.h5ad`` in chunks, write the imputed layer chunk by chunk.

Memory holds the sparse counts on the model's genes, the neighbour graph and one dense
chunk of ``inference.chunk_size`` cells, never the dense cells x genes result. The numbers
are those of the in-memory path (:func:`scgapfill.infer.imputation.impute_counts`): bit for bit when
the chunk size is a multiple of ``impute.batch_size`` (the network then sees the same
batches), to float rounding otherwise. Above ``inference.reference_cells`` cells the graph is built
against a reference of cells instead, and memory no longer grows with the cells (:mod:`scgapfill.infer.reference`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scgapfill.data.io import check_not_empty, is_integer_counts, missing_input, readable
from scgapfill.data.normalization import counts_from_lognorm, lognorm, size_factors
from scgapfill.graph.spatial import carry_spatial, check_graph, positions_of, spots_of
from scgapfill.infer.anomaly import add_anomaly, anomaly_scores
from scgapfill.infer.imputation import align_genes, impute_counts, imputation_record, imputed_chunks
from scgapfill.params import ImputeParams, parse

log = logging.getLogger(__name__)


def read_aligned_counts_backed(
    path: str | Path, model_genes: list[str], chunk_size: int
) -> tuple[sp.csr_matrix, pd.DataFrame, dict]:
    """Counts of a ``.h5ad`` on the model's genes, read ``chunk_size`` cells at a time.

    The file is opened read-only; only one chunk of its ``X`` is in memory before it is
    reduced to the model's genes (:func:`aligned_chunks`).

    Returns
    -------
    counts : scipy.sparse.csr_matrix
        Cells x model genes (float32).
    obs : pandas.DataFrame
        The file's cell annotations.
    report : dict
        What :func:`scgapfill.infer.imputation.align_genes` reports.
    """
    obs = read_obs(path)
    parts, report = [], {}
    for _, aligned, report in aligned_chunks(path, model_genes, chunk_size):
        parts.append(aligned)
    return sp.csr_matrix(sp.vstack(parts, format="csr")), obs, report


def read_obs(path: str | Path) -> pd.DataFrame:
    """The cell annotations of a ``.h5ad`` (opened backed: ``X`` is not read), index unique strings."""
    path = _checked_h5ad(path)
    with readable(path, ".h5ad"):
        backed = ad.read_h5ad(path, backed="r")
    try:
        check_not_empty(backed.n_obs, backed.n_vars, str(path))
        obs = backed.obs.copy()
    finally:
        backed.file.close()
    obs.index = obs.index.astype(str)
    if not obs.index.is_unique:
        obs.index = ad.utils.make_index_unique(obs.index)
    return obs


def read_spots(path: str | Path) -> ad.AnnData | None:
    """The spot coordinates and images of a ``.h5ad`` (``obsm``/``uns["spatial"]``) with its cell annotations
    (:func:`~scgapfill.graph.spatial.spots_of`; ``X`` is not read), or ``None`` where it has no coordinates."""
    path = _checked_h5ad(path)
    with readable(path, ".h5ad"):
        backed = ad.read_h5ad(path, backed="r")
    try:
        return spots_of(backed)
    finally:
        backed.file.close()


def aligned_chunks(
    path: str | Path, model_genes: list[str], chunk_size: int
) -> Iterator[tuple[int, sp.csr_matrix, dict]]:
    """``(first row, counts, alignment report)`` of each ``chunk_size`` cells of a ``.h5ad``'s ``X``, on the
    model's genes (float32 CSR, no stored zeros); each chunk is checked to hold raw integer counts."""
    path = _checked_h5ad(path)
    if chunk_size < 1:
        raise ValueError(f"inference.chunk_size must be >= 1 cell for chunked reading, got {chunk_size}")
    with readable(path, ".h5ad"):
        handle = h5py.File(path, "r")
    try:
        with readable(path, ".h5ad"):  # X and var only: the cells' annotations are read by read_obs
            matrix = ad.io.sparse_dataset(handle["X"]) if isinstance(handle["X"], h5py.Group) else handle["X"]
            gene_names = [str(g) for g in ad.io.read_elem(handle["var"]).index]
        n_cells = matrix.shape[0]
        check_not_empty(n_cells, len(gene_names), str(path))
        for start in range(0, n_cells, chunk_size):
            chunk = sp.csr_matrix(matrix[start : min(start + chunk_size, n_cells)], dtype=np.float32)
            if not is_integer_counts(chunk):
                raise ValueError(
                    f"{path}: X of cells {start}..{start + chunk.shape[0] - 1} is not raw integer counts; "
                    "chunked inference reads counts from X. Store raw UMI counts in X, or set "
                    "inference.chunk_size=0 to read layers['counts'] in memory"
                )
            aligned, report = align_genes(chunk, gene_names, model_genes)
            aligned = aligned.astype(np.float32)
            aligned.eliminate_zeros()  # a stored zero is unobserved, to be filled: never an observed count to keep
            yield start, aligned, report
    finally:
        handle.close()


def _checked_h5ad(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".h5ad" or path.is_dir():
        raise ValueError(
            f"input.path={str(path)!r}: chunked inference reads a .h5ad file; for other formats "
            "set inference.chunk_size=0 (the whole data set in memory)"
        )
    if not path.exists():
        raise missing_input(path)
    return path


class StreamedImputation:
    """The inference result, written to ``.h5ad`` one chunk of cells at a time.

    ``X`` is the log-normalised input, ``layers["counts"]`` the counts and
    ``layers["imputed"]`` the imputation, as in the training pipeline's output.
    :class:`scgapfill.glue.datasets.AnnDataDataset` saves it like an AnnData (it has
    ``write_h5ad``); :meth:`to_memory` builds the AnnData for small data.
    """

    def __init__(
        self,
        bundle: Any,
        counts: sp.csr_matrix,
        obs: pd.DataFrame,
        params: ImputeParams | dict | None = None,
        chunk_size: int | None = None,
        report: dict | None = None,
        spots: ad.AnnData | None = None,
    ) -> None:
        self.bundle = bundle
        self.counts = sp.csr_matrix(counts, dtype=np.float32)
        self.obs = obs
        self.params = bundle.impute if params is None else parse("impute", params)
        self.report = report or {"n_model_genes": len(bundle.gene_names), "n_missing": 0}
        self.chunk_size = chunk_size
        self.shape = self.counts.shape
        # The cells' spot coordinates and images (spots_of), carried to the output; a model whose context is
        # the tissue's (model.context_graph spatial or both) takes its neighbours from them.
        self.spots = spots
        graph, library_key = bundle.model.context_graph, bundle.model.context_library_key
        self.positions = None if spots is None or graph == "expression" else positions_of(spots, library_key)
        check_graph(graph, self.positions, self.shape[0])

    def _skeleton(self) -> ad.AnnData:
        sf = size_factors(self.counts)
        obs = self.obs.copy()
        obs["size_factor"] = sf
        if self.params.anomaly:
            add_anomaly(obs, anomaly_scores(self.bundle, self.counts, seed=self.bundle.train.seed,
                                            positions=self.positions, params=self.params))
        var = pd.DataFrame(index=pd.Index([str(g) for g in self.bundle.gene_names]))
        adata = ad.AnnData(
            X=sp.csr_matrix(lognorm(self.counts, sf), dtype=np.float32), obs=obs, var=var,
            layers={"counts": self.counts},
        )
        if self.spots is not None:
            carry_spatial(self.spots, adata)
        adata.uns["gapfill"] = {**imputation_record(self.params, self.report), "layer": "imputed",
                                "counts_layer": "imputed_counts",
                                "chunk_size": int(self.chunk_size or self.shape[0])}
        return adata

    def _chunks(self):
        return imputed_chunks(self.bundle, self.counts, self.params, chunk_size=self.chunk_size,
                              positions=self.positions)

    def write_h5ad(self, path: str | Path, compression: str | None = None, **kwargs: Any) -> None:
        """Write everything but the imputed layer through anndata, then fill that layer chunk by chunk."""
        self._skeleton().write_h5ad(path, compression=compression, **kwargs)
        n_cells = self.shape[0]
        rows_per_chunk = max(1, min(self.chunk_size or n_cells, n_cells))
        sf = size_factors(self.counts)
        with h5py.File(path, "a") as handle:
            layers = create_dense_layers(handle, self.shape, rows_per_chunk, compression)
            for rows, values in self._chunks():
                layers["imputed"][rows] = values
                layers["imputed_counts"][rows] = counts_from_lognorm(values, sf[rows]).astype(np.float32)
                log.info("imputed cells %d..%d of %d", rows.start, rows.stop - 1, n_cells)

    def to_memory(self) -> ad.AnnData:
        """The whole result as an AnnData, the dense layer built at once (small data, comparisons)."""
        adata = self._skeleton()
        adata.layers["imputed"] = impute_counts(self.bundle, self.counts, self.params, positions=self.positions)
        adata.layers["imputed_counts"] = counts_from_lognorm(adata.layers["imputed"], adata.obs["size_factor"]
                                                             .to_numpy()).astype(np.float32)
        return adata


def create_dense_layers(handle: h5py.File, shape: tuple[int, int], rows_per_chunk: int,
                        compression: str | None) -> dict[str, h5py.Dataset]:
    """The empty ``imputed`` and ``imputed_counts`` layers of a written result, filled chunk by chunk."""
    n_cells, n_genes = shape
    layers = {}
    for name in ("imputed", "imputed_counts"):
        layers[name] = handle["layers"].create_dataset(
            name, shape=(n_cells, n_genes), dtype="float32", compression=compression,
            chunks=(max(1, min(rows_per_chunk, 1024, n_cells)), n_genes) if n_cells else None,
        )
        # The attributes anndata writes for a dense array, so read_h5ad sees an ordinary layer.
        layers[name].attrs["encoding-type"] = "array"
        layers[name].attrs["encoding-version"] = "0.2.0"
    return layers


def cells_with_counts(totals: np.ndarray, obs: pd.DataFrame, path: str | Path | None, report: dict) -> np.ndarray:
    """Which cells have counts on the model's genes (``totals`` > 0): the others are skipped with a warning
    and counted in ``report["cells_skipped_no_counts"]``; none at all is an error naming the input
    (``input.path``, or ``adata`` where ``path`` is None: a Python caller's)."""
    source = "adata" if path is None else f"input.path={str(path)!r}"
    empty = np.asarray(totals) == 0
    if empty.all():
        raise ValueError(f"no cell of {source} has counts on the model's genes; is it the right data set?")
    if empty.any():
        log.warning("%d cells have no counts on the model's genes and are skipped: %s",
                    int(empty.sum()), list(obs.index[empty][:5]))
    report["cells_skipped_no_counts"] = int(empty.sum())
    return ~empty
