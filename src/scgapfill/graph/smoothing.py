"""The output smoothing: each cell's estimated levels averaged with its neighbours' estimates.

Every estimate must exist before any chunk's average is final, so they wait in a store (memory for one
chunk, temporary files otherwise) and are read back one chunk at a time.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Iterator

import numpy as np
import scipy.sparse as sp

from scgapfill.params import ImputeParams


def observed_kept(values: sp.csr_matrix, out: np.ndarray) -> np.ndarray:
    coo = values.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


def smoothed_chunks(
    estimate: Callable[[slice], np.ndarray], values: sp.csr_matrix, pca: Any, graph: Any, chunks: list[slice],
    params: ImputeParams, k: int, levels: np.ndarray | None = None,
) -> Iterator[tuple[slice, np.ndarray]]:
    """Every cell's levels averaged with its neighbours' (``impute.output_smoothing`` on theirs).

    All estimates exist before any chunk is final. ``levels`` is an array of the result's shape the
    caller lends (float32, the one it fills with what this yields): every estimate waits in it and each
    chunk's average is one product over it; the chunks are yielded once all are made, so writing them
    into ``levels`` is safe. Without it the estimates wait in a store (temporary files beyond one
    chunk) and each chunk reads every other back: for output that never exists whole in memory.
    ``values`` are the cells' log-normalised input, ``pca`` the input's principal components (they place
    the estimates when the neighbours are found on them), ``graph`` the input's kNN graph otherwise.
    """
    if levels is None:
        with _LevelStore(len(chunks)) as store:
            graph = _estimated(estimate, values, pca, graph, chunks, params, k, store.put)
            for i, chunk in enumerate(chunks):
                own_levels = store.get(i)
                yield chunk, _combined(own_levels, _neighbours_in_store(graph[chunk], chunks, i, own_levels, store),
                                       params)
        return

    def keep(i: int, own_levels: np.ndarray) -> None:
        levels[chunks[i]] = own_levels

    graph = _estimated(estimate, values, pca, graph, chunks, params, k, keep)
    with _LevelStore(len(chunks)) as finished:
        for i, chunk in enumerate(chunks):
            finished.put(i, _combined(levels[chunk], graph[chunk] @ levels, params))
        for i, chunk in enumerate(chunks):
            yield chunk, finished.get(i)


def _estimated(estimate: Callable[[slice], np.ndarray], values: sp.csr_matrix, pca: Any, graph: Any,
               chunks: list[slice], params: ImputeParams, k: int, keep: Callable[[int, np.ndarray], None]) -> sp.csr_matrix:
    """Every chunk's estimated levels handed to ``keep(i, levels)``; the graph their average runs on, float32."""
    from scgapfill.graph.cellgraph import knn_graph

    on_imputed = params.smoothing_neighbours == "imputed"
    embedded = []
    for i, chunk in enumerate(chunks):
        own = estimate(chunk)
        if on_imputed:
            # The cell's own estimate, observed counts kept, in the input's principal components:
            # neighbours found on estimates rather than on sparse counts (linear, so chunk by chunk).
            embedded.append(pca.transform(observed_kept(values[chunk], own.copy())))
        keep(i, np.expm1(own))  # counts per 1e4: the scale the network estimates in
    graph = knn_graph(np.vstack(embedded), k) if on_imputed else graph
    # float32 weights: a float64 graph times float32 levels would copy the levels to float64 for every product.
    return sp.csr_matrix(graph, dtype=np.float32)


def _neighbours_in_store(block: sp.csr_matrix, chunks: list[slice], i: int, own_levels: np.ndarray,
                         store: "_LevelStore") -> np.ndarray:
    """``block @ levels`` over every chunk's levels, each read from the store in turn (chunk ``i``'s given)."""
    neighbours = np.zeros(own_levels.shape, dtype=np.float32)
    for j, source_chunk in enumerate(chunks):
        part = block[:, source_chunk]
        if part.nnz:
            neighbours += part @ (own_levels if j == i else store.get(j))
    return neighbours


def _combined(own_levels: np.ndarray, neighbours: np.ndarray, params: ImputeParams) -> np.ndarray:
    """``log1p((1 - w) * own + w * neighbours)``, float32, made in the neighbours' array: two chunk-sized
    temporaries fewer at imputation's peak."""
    weight = params.output_smoothing
    neighbours *= weight
    neighbours += (1 - weight) * own_levels
    return np.log1p(neighbours, out=neighbours)


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


def neighbour_fill(observed: sp.csr_matrix, estimates: np.ndarray, k: int, n_pcs: int, seed: int,
                   mode: str = "expression", positions: Any = None, steps: int = 1) -> np.ndarray:
    """The genes the model does not estimate, each cell's log-normalised values averaged with those of
    its ``k`` nearest cells (itself included, equal weights), float32; ``steps`` times over, so that each
    step reaches the neighbours' neighbours (a few steps of diffusion, as MAGIC's).

    ``observed`` holds those genes' ``log1p(counts / size_factor * 1e4)``; ``estimates`` the model's
    estimates of its own genes (``log1p`` levels), on which the neighbours are found: they place a cell
    by every modelled gene at once, where its sparse counts place it by the few it happened to catch.
    Averaging the logs, as kNN smoothing and MAGIC do, estimates what the cell's log-normalised value
    is on average at its depth (docs/evaluation.md). ``mode`` (``model.context_graph``) and ``positions``
    (the cells' :class:`~scgapfill.graph.spatial.SpotPositions`) take the nearest spots in the tissue
    instead (``spatial``) or as well (``both``), as the context channel does.
    """
    from scgapfill.graph.cellgraph import knn_graph, pca_embedding
    from scgapfill.graph.spatial import context_graph

    def on_estimates() -> sp.csr_matrix:
        embedding, _ = pca_embedding(estimates, n_pcs, seed)
        return knn_graph(embedding, k, seed)

    graph = context_graph(mode, on_estimates, positions, k)
    graph.data[:] = 1.0
    graph = graph + sp.identity(graph.shape[0], format="csr")
    graph = sp.csr_matrix(sp.diags(1.0 / np.asarray(graph.sum(axis=1)).ravel()) @ graph, dtype=np.float32)
    filled = np.asarray((graph @ sp.csr_matrix(observed, dtype=np.float32)).toarray(), dtype=np.float32)
    for _ in range(steps - 1):
        filled = np.asarray(graph @ filled, dtype=np.float32)
    return filled
