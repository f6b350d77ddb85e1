"""Apply a trained bundle: align genes, fill the gaps, return log-normalised values."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp

from .layout import from_grid, to_grid
from .normalization import lognorm, size_factors

MIN_GENE_OVERLAP = 0.5


def align_genes(counts_csr: Any, gene_names: Any, model_genes: Any) -> tuple[sp.csr_matrix, dict]:
    """Reorder the columns of ``counts_csr`` to the model's genes.

    Parameters
    ----------
    counts_csr
        Cells x genes counts (sparse or dense).
    gene_names
        Names of its columns.
    model_genes
        The model's genes (``bundle.gene_names``).

    Returns
    -------
    aligned : scipy.sparse.csr_matrix
        Cells x model genes; a model gene absent from the data is an all-zero
        column, i.e. unobserved, to be filled like any zero.
    report : dict
        ``n_model_genes``, ``n_present``, ``n_missing``, ``missing_genes`` (all of
        them), ``n_extra`` and ``extra_genes`` (data genes the model ignores).

    Raises
    ------
    ValueError
        If gene names are duplicated or fewer than half of the model's genes are present.
    """
    gene_names = [str(g) for g in gene_names]
    model_genes = [str(g) for g in model_genes]
    if counts_csr.shape[1] != len(gene_names):
        raise ValueError(f"counts have {counts_csr.shape[1]} columns but {len(gene_names)} gene names were given")
    for what, names in (("data", gene_names), ("model", model_genes)):
        seen, dupes = set(), []
        for name in names:
            if name in seen:
                dupes.append(name)
            seen.add(name)
        if dupes:
            raise ValueError(
                f"{what} gene names are not unique ({len(dupes)} duplicates, e.g. {dupes[:5]}); "
                "make them unique (AnnData.var_names_make_unique) before imputing"
            )
    column_of = {name: i for i, name in enumerate(gene_names)}
    present = [(column_of[g], j) for j, g in enumerate(model_genes) if g in column_of]
    missing = [g for g in model_genes if g not in column_of]
    model_set = set(model_genes)
    extra = [g for g in gene_names if g not in model_set]
    if len(present) < MIN_GENE_OVERLAP * len(model_genes):
        raise ValueError(
            f"only {len(present)} of the model's {len(model_genes)} genes are in the data "
            f"(need at least {MIN_GENE_OVERLAP:.0%}); missing e.g. {missing[:5]}. "
            "Check that gene identifiers match (symbols vs Ensembl IDs) and the organism is the same"
        )
    source = np.array([s for s, _ in present], dtype=np.int64)
    target = np.array([t for _, t in present], dtype=np.int64)
    # A 0/1 selection matrix moves columns without densifying the data.
    selector = sp.csr_matrix(
        (np.ones(len(present)), (source, target)), shape=(len(gene_names), len(model_genes))
    )
    matrix = counts_csr if sp.issparse(counts_csr) else sp.csr_matrix(counts_csr)
    aligned = sp.csr_matrix(matrix @ selector)
    aligned.sort_indices()
    report = {
        "n_model_genes": len(model_genes),
        "n_present": len(present),
        "n_missing": len(missing),
        "missing_genes": missing,
        "n_extra": len(extra),
        "extra_genes": extra,
    }
    return aligned, report


def imputed_chunks(
    bundle: Any,
    counts_csr: Any,
    batch_size: int = 256,
    fill_only_zeros: bool = False,
    device: Any = None,
    chunk_size: int | None = None,
) -> Iterator[tuple[slice, np.ndarray]]:
    """Impute ``chunk_size`` cells at a time; yields ``(rows, values)`` in cell order.

    Same parameters and values as :func:`impute_counts`; only one chunk is ever dense in memory
    (the neighbour graph spans every cell, so it is built once from the sparse matrix). With
    ``model.output_smoothing`` every cell's estimate is needed before its neighbours' are final:
    they are written to temporary files first, one per chunk, and read back one at a time.
    ``chunk_size=None`` is one chunk.
    """
    import torch

    from .nn import network_input
    from .cellgraph import context_source, diffuse, knn_graph, pca_embedding, walk_mean
    from .train.data import GeneScaler, as_counts_matrix

    if batch_size < 1:
        raise ValueError(f"impute.batch_size must be >= 1, got {batch_size}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"inference.chunk_size must be >= 1 cell, got {chunk_size}")
    counts = as_counts_matrix(counts_csr, "impute_counts")
    n_cells, n_genes = counts.shape[0], len(bundle.gene_names)
    if counts.shape[1] != n_genes:
        raise ValueError(
            f"counts have {counts.shape[1]} genes, the model has {n_genes}; align them with align_genes() first"
        )
    values = sp.csr_matrix(lognorm(counts, size_factors(counts)), dtype=np.float64)
    scaler = GeneScaler.from_dict(bundle.scaler)
    model_params = bundle.model_params
    smoothing = float(model_params.get("output_smoothing", 0.0))  # bundles saved before the option: none
    on_imputed = model_params.get("smoothing_neighbours", "input") == "imputed"
    graph = walk = source = pca = None
    k = int(model_params["context_k"])
    space = model_params.get("context_space", "log")  # bundles saved before the option: log
    # The input's graph serves the context and, unless found again on the estimates, the average;
    # the PCA also places the estimates when they are.
    if model_params["context_channel"] or smoothing:
        embedding, pca = pca_embedding(values, int(model_params["context_n_pcs"]), int(bundle.train_params["seed"]))
    if model_params["context_channel"] or (smoothing and not on_imputed):
        graph = knn_graph(embedding, k)
    if model_params["context_channel"]:
        source = context_source(values, space)  # once: each chunk's context averages every cell
        walk = diffuse(graph, int(model_params.get("context_steps", 1)))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    net = bundle.build_network().to(device)
    net.eval()
    layout = bundle.layout
    chunk_size = n_cells if chunk_size is None else chunk_size
    chunks = [slice(s, min(s + chunk_size, n_cells)) for s in range(0, n_cells, chunk_size)]

    def predict(chunk: slice) -> np.ndarray:
        scaled = scaler.transform(values[chunk])
        context = None if walk is None else scaler.transform(walk_mean(walk[chunk], source, space))
        out = np.empty((scaled.shape[0], n_genes), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, out.shape[0], batch_size):
                rows = slice(start, min(start + batch_size, out.shape[0]))
                grid = torch.from_numpy(to_grid(scaled[rows], layout)).to(device)
                context_grid = None if context is None else torch.from_numpy(to_grid(context[rows], layout)).to(device)
                pred = net(network_input(grid, None, context_grid)).float().cpu().numpy()
                out[rows] = scaler.inverse(from_grid(pred, layout))
        return out

    def observed_kept(chunk: slice, out: np.ndarray) -> np.ndarray:
        coo = values[chunk].tocoo()
        out[coo.row, coo.col] = coo.data
        return out

    def finished(chunk: slice, out: np.ndarray) -> np.ndarray:
        return observed_kept(chunk, out) if fill_only_zeros else out

    if not smoothing:
        for chunk in chunks:
            yield chunk, finished(chunk, predict(chunk))
        return
    # Every cell's estimate is averaged with its neighbours', so all estimates exist before any
    # chunk is final: they wait in a store, read back one chunk at a time.
    def embed(chunk: slice, own: np.ndarray) -> np.ndarray:
        # The cell's own estimate, observed counts kept, in the input's principal components:
        # neighbours found on estimates rather than on sparse counts (linear, so chunk by chunk).
        own = observed_kept(chunk, own.copy())
        return own if pca is None else pca.transform(own)

    with _LevelStore(len(chunks)) as store:
        embedded = []
        for i, chunk in enumerate(chunks):
            own = predict(chunk)
            if on_imputed:
                embedded.append(embed(chunk, own))
            store.put(i, np.expm1(own))  # counts per 1e4: the scale the network estimates in
        smoothing_graph = knn_graph(np.vstack(embedded), k) if on_imputed else graph
        for i, chunk in enumerate(chunks):
            own_levels = store.get(i)
            block = smoothing_graph[chunk]
            neighbours = np.zeros((block.shape[0], n_genes), dtype=np.float64)
            for j, source_chunk in enumerate(chunks):
                part = block[:, source_chunk]
                if part.nnz:
                    neighbours += part @ (own_levels if j == i else store.get(j))
            mean = (1 - smoothing) * own_levels + smoothing * neighbours
            yield chunk, finished(chunk, np.log1p(mean).astype(np.float32))


class _LevelStore:
    """Each chunk's estimates until every chunk's exist: in memory for a single chunk, otherwise
    in temporary files, one per chunk, so that only the chunks being combined are in memory (a
    memory map of the whole would count every page it touches in the process's memory)."""

    def __init__(self, n_chunks: int) -> None:
        self._in_memory: dict[int, np.ndarray] | None = {} if n_chunks == 1 else None
        self._workdir: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> "_LevelStore":
        if self._in_memory is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="scgapfill-impute-")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._workdir is not None:
            self._workdir.cleanup()

    def _path(self, i: int) -> str:
        return os.path.join(self._workdir.name, f"levels_{i}.npy")

    def put(self, i: int, levels: np.ndarray) -> None:
        if self._in_memory is not None:
            self._in_memory[i] = levels
        else:
            np.save(self._path(i), levels)

    def get(self, i: int) -> np.ndarray:
        return self._in_memory[i] if self._in_memory is not None else np.load(self._path(i))


def impute_counts(
    bundle: Any,
    counts_csr: Any,
    batch_size: int = 256,
    fill_only_zeros: bool = False,
    device: Any = None,
) -> np.ndarray:
    """Impute a counts matrix with a trained bundle.

    Parameters
    ----------
    bundle
        A :class:`scgapfill.model_io.GapFillBundle`.
    counts_csr
        Cells x genes raw counts, columns in ``bundle.gene_names`` order (see
        :func:`align_genes`), scipy sparse or numpy.
    batch_size
        Cells per forward pass.
    fill_only_zeros
        Keep the observed nonzero values (their log-normalised input) and
        replace only the zeros.
    device
        Torch device; ``None`` picks CUDA when available, else CPU.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_cells, n_genes)`` in ``log1p(counts / sf * 1e4)`` space, with
        ``sf`` the row sums of ``counts_csr``.
    """
    out = np.empty((counts_csr.shape[0], len(bundle.gene_names)), dtype=np.float32)
    for rows, values in imputed_chunks(bundle, counts_csr, batch_size, fill_only_zeros, device):
        out[rows] = values
    return out
