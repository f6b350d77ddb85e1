"""Apply a trained bundle: align genes, fill the gaps, return log-normalised values."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp

from scgapfill.data.layout import from_grid, to_grid
from scgapfill.data.normalization import as_composition, expected_log_of_levels, lognorm, size_factors
from scgapfill.graph.smoothing import observed_kept, smoothed_chunks
from scgapfill.params import ImputeParams, ModelParams, parse
from scgapfill.data.genes import (  # noqa: F401  (here too: what imputing a data set's genes starts with)
    MIN_GENE_OVERLAP, MISSING_GENE_WARNING, align_genes, missing_gene_share, warn_missing_genes,
)

log = logging.getLogger(__name__)

SPACES = {
    "composition": "log1p(1e4 * level / sum of the cell's levels): each cell sums to 1e4 after filling",
    "observed_library": "log1p(counts / size_factor * 1e4), size_factor the cell's observed total: "
                        "a filled cell sums to more than 1e4",
}
METHOD = "scgapfill-unet"


def imputation_record(params: ImputeParams, report: dict) -> dict:
    """What ``uns["gapfill"]`` says about an imputed layer: how it was made and on which genes."""
    n_model = int(report["n_model_genes"])
    return {
        "method": METHOD,
        "scale": params.scale,
        "space": SPACES[params.scale],
        "form": params.form,
        "fill_only_zeros": bool(params.fill_only_zeros),
        "unmodelled": params.unmodelled,
        "unmodelled_k": int(params.unmodelled_k),
        "unmodelled_steps": int(params.unmodelled_steps),
        "output_smoothing": float(params.output_smoothing),
        "smoothing_neighbours": params.smoothing_neighbours,
        "n_genes_modelled": n_model - int(report["n_missing"]),
        "missing_gene_share": missing_gene_share(report),
    }


class LognormRows:
    """Rows of ``log1p(counts / sf * 1e4)``, each made when asked for: the same numbers as rows of the
    whole matrix, which is never held beside the output (at 100k cells it is ~400 MB of float64).

    ``counts`` must hold its values exactly (it is the caller's clean matrix or this module's copy).
    """

    def __init__(self, counts: sp.csr_matrix, size_factors: np.ndarray) -> None:
        self.counts, self.size_factors, self.shape = counts, size_factors, counts.shape

    def __getitem__(self, rows: slice) -> sp.csr_matrix:
        return lognorm(self.counts[rows], self.size_factors[rows])


def _clean_csr(counts: Any) -> bool:
    """Already what :func:`as_counts_matrix` would copy it into: CSR, float, sorted, no stored zeros,
    finite and >= 0 (so its rows can be read instead of a float64 copy of the whole)."""
    return (sp.issparse(counts) and counts.format == "csr" and counts.dtype in (np.float32, np.float64)
            and counts.has_sorted_indices and bool(np.all(counts.data > 0)) and bool(np.all(np.isfinite(counts.data))))


@dataclass
class NetworkInputs:
    """What every chunk's prediction reads: the cells' values and the graphs built once over all cells."""

    values: LognormRows  # log1p(counts / sf * 1e4) of any cells asked for
    space: str  # the context's averaging space
    pca: Any = None  # the input's principal components (places the estimates when neighbours are found on them)
    graph: Any = None  # the input's kNN graph
    walk: Any = None  # the context's random walk on it
    source: Any = None  # the values the context averages


def _inputs(counts: sp.csr_matrix, original: Any, model: ModelParams, params: ImputeParams, seed: int,
            known: Any = None, positions: Any = None) -> NetworkInputs:
    """The input's kNN graph is built only where it is used: the context, or the average on the input's neighbours.

    ``counts`` is imputed_chunks' validated float64 copy of ``original``. The rows are read from
    ``original`` itself where it is clean, so the copy lives only while the graphs are built.
    ``known`` is a :class:`~scgapfill.graph.cellgraph.CellGraph` taken instead of a new PCA and search when
    it was built from these very counts with these settings (the bundle's training cells).
    ``positions`` are the cells' spot positions, for ``model.context_graph`` ``spatial`` or ``both``: the
    context's graph is then theirs (:func:`~scgapfill.graph.spatial.context_graph`); the output smoothing
    on the input's neighbours (``impute.smoothing_neighbours: input``) uses it too.
    """
    from scgapfill.graph.cellgraph import CountsPerTarget, NeighbourWalk, context_source, knn_graph, pca_embedding
    from scgapfill.graph.spatial import check_graph, context_graph

    sf = size_factors(counts)
    clean = _clean_csr(original)
    inputs = NetworkInputs(values=LognormRows(original if clean else counts, sf), space=model.context_space)
    smoothing = params.output_smoothing > 0
    on_imputed = params.smoothing_neighbours == "imputed"
    if not (model.context_channel or smoothing):
        return inputs
    spatial = model.context_graph != "expression"
    if model.context_channel:
        check_graph(model.context_graph, positions, counts.shape[0])
    spatial = spatial and positions is not None
    settings = (model.context_k, model.context_n_pcs, seed)
    if known is not None and not known.matches(counts, *settings):
        known = None
    log_context = model.context_channel and model.context_space != "counts"
    whole = None
    if known is None or log_context:
        # Every cell at once, for the PCA and the log context's source: in place on the copy when the
        # rows are read from ``original``, so the copy goes when the graphs are built.
        whole = lognorm(counts, sf, copy=not clean)
        if clean:  # the validated copy has the clean counts' very pattern: one set of index arrays is kept
            whole = sp.csr_matrix((whole.data, original.indices, original.indptr), shape=whole.shape)
    needs_graph = model.context_channel or (smoothing and not on_imputed)
    if known is None:
        embedding, inputs.pca = pca_embedding(whole, model.context_n_pcs, seed)
        inputs.graph = knn_graph(embedding, model.context_k, seed) if needs_graph else None
    else:
        inputs.pca, inputs.graph = known.pca, known.graph if needs_graph else None
    if spatial and inputs.graph is not None:
        expression = inputs.graph
        inputs.graph = context_graph(model.context_graph, lambda: expression, positions, model.context_k)
    if model.context_channel:
        # Each chunk's context averages every cell: in counts space straight from the clean counts.
        inputs.source = context_source(whole, model.context_space) if log_context \
            else CountsPerTarget(inputs.values.counts, sf)
        inputs.walk = NeighbourWalk(inputs.graph, model.context_steps)
    return inputs


def predict_chunk(
    net: Any, bundle: Any, scaler: Any, inputs: NetworkInputs, chunk: slice, batch_size: int, device: Any
) -> np.ndarray:
    """The network's estimate for the cells of ``chunk``, in log1p(counts per 1e4)."""
    import torch

    from scgapfill.graph.cellgraph import walk_mean
    from scgapfill.nn import network_input

    layout = bundle.layout
    scaled = scaler.transform(inputs.values[chunk])
    context = None
    if inputs.walk is not None:
        context = scaler.transform(walk_mean(inputs.walk[chunk], inputs.source, inputs.space))
    out = np.empty((scaled.shape[0], len(bundle.gene_names)), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, out.shape[0], batch_size):
            rows = slice(start, min(start + batch_size, out.shape[0]))
            grid = torch.from_numpy(to_grid(scaled[rows], layout)).to(device)
            context_grid = None if context is None else torch.from_numpy(to_grid(context[rows], layout)).to(device)
            pred = net(network_input(grid, None, context_grid)).float().cpu().numpy()
            out[rows] = scaler.inverse(from_grid(pred, layout))
    return out


def imputed_chunks(
    bundle: Any,
    counts_csr: Any,
    params: ImputeParams | dict | None = None,
    device: Any = None,
    chunk_size: int | None = None,
    out: np.ndarray | None = None,
    positions: Any = None,
) -> Iterator[tuple[slice, np.ndarray]]:
    """Impute ``chunk_size`` cells at a time; yields ``(rows, values)`` in cell order.

    Same parameters and values as :func:`impute_counts`; only one chunk is ever dense in memory
    (the neighbour graph spans every cell, so it is built once from the sparse matrix). With
    ``impute.output_smoothing`` every cell's estimate is needed before its neighbours' are final:
    they are written to temporary files first, one per chunk, and read back one at a time.
    ``chunk_size=None`` is one chunk. ``out``, the caller's float32 array of the whole result, which it
    fills with what this yields, holds the estimates meanwhile instead (one product per chunk, no files).
    ``positions``: the cells' :class:`~scgapfill.graph.spatial.SpotPositions` (``model.context_graph``).
    """
    import torch

    from scgapfill.train.data import GeneScaler, as_counts_matrix

    params = bundle.impute if params is None else parse("impute", params)
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"inference.chunk_size must be >= 1 cell, got {chunk_size}")
    counts = as_counts_matrix(counts_csr, "impute_counts")
    n_cells, n_genes = counts.shape[0], len(bundle.gene_names)
    if counts.shape[1] != n_genes:
        raise ValueError(
            f"counts have {counts.shape[1]} genes, the model has {n_genes}; align them with align_genes() first"
        )
    model = bundle.model
    inputs = _inputs(counts, counts_csr, model, params, bundle.train.seed, bundle.cell_graph, positions)
    del counts  # what the chunks need of it is in inputs (the rows are read again from clean counts)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    net = bundle.build_network().to(device)
    scaler = GeneScaler.from_dict(bundle.scaler)
    chunk_size = n_cells if chunk_size is None else chunk_size
    chunks = [slice(s, min(s + chunk_size, n_cells)) for s in range(0, n_cells, chunk_size)]

    def estimate(chunk: slice) -> np.ndarray:
        return predict_chunk(net, bundle, scaler, inputs, chunk, params.batch_size, device)

    if params.output_smoothing:
        finished = smoothed_chunks(estimate, inputs.values, inputs.pca, inputs.graph, chunks, params, model.context_k,
                                   levels=out)
    else:
        finished = ((chunk, estimate(chunk)) for chunk in chunks)
    for chunk, estimates in finished:
        yield chunk, delivered(inputs.values[chunk], estimates, params, inputs.values.size_factors[chunk])


def delivered(values: sp.csr_matrix, out: np.ndarray, params: ImputeParams, depth: np.ndarray) -> np.ndarray:
    """A chunk's estimates as delivered: each entry the expected log-normalised value at the cell's depth
    (``impute.form: expected_log``) or the level with the observed values kept (``level`` with
    ``impute.fill_only_zeros``), then each cell made a composition (``impute.scale``). ``values`` are the
    chunk's log-normalised input, ``depth`` its cells' totals."""
    if params.form == "expected_log":
        out = expected_log_of_levels(out, depth)
    elif params.fill_only_zeros:
        out = observed_kept(values, out)
    return as_composition(out) if params.scale == "composition" else out


# Cells imputed at a time by impute_counts (rounded up to whole batches). Each chunk's float64 work
# (smoothing, observed counts kept, composition) is a few dense copies of it: 4,096 cells x 2,000 genes
# keep that near 300 MB, where 16,384 took ~1.2 GB (peak RSS at 20k cells, benchmarks/scale.py).
IN_MEMORY_CHUNK_CELLS = 4096


def impute_counts(
    bundle: Any,
    counts_csr: Any,
    params: ImputeParams | dict | None = None,
    device: Any = None,
    positions: Any = None,
) -> np.ndarray:
    """Impute a counts matrix with a trained bundle.

    Parameters
    ----------
    bundle
        A :class:`scgapfill.nn.bundle.GapFillBundle`.
    counts_csr
        Cells x genes raw counts, columns in ``bundle.gene_names`` order (see
        :func:`align_genes`), scipy sparse or numpy.
    params
        :class:`~scgapfill.params.ImputeParams`: cells per forward pass, whether observed
        nonzero values are kept (their log-normalised input) and only the zeros replaced, the
        neighbours' average. ``None``: those saved with the bundle.
    device
        Torch device; ``None`` picks CUDA when available, else CPU.
    positions
        The cells' :class:`~scgapfill.graph.spatial.SpotPositions`, where ``model.context_graph`` is
        ``spatial`` or ``both``.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_cells, n_genes)``: ``log1p`` of each cell's levels, which sum to 1e4 per cell
        (``impute.scale: composition``) or are per 1e4 of the cell's observed counts
        (``observed_library``; the filled cell then sums to more).
    """
    batch_size = (bundle.impute if params is None else parse("impute", params)).batch_size
    # Whole batches per chunk, so the numbers are those of one chunk; beyond one chunk the output's
    # float32 array is the only whole-data array held (it holds the estimates while they are smoothed).
    chunk_size = -(-IN_MEMORY_CHUNK_CELLS // batch_size) * batch_size
    out = np.empty((counts_csr.shape[0], len(bundle.gene_names)), dtype=np.float32)
    for rows, values in imputed_chunks(bundle, counts_csr, params, device, chunk_size=chunk_size, out=out,
                                   positions=positions):
        out[rows] = values
    return out
