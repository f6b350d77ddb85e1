"""A Splatter-like simulator of scRNA-seq counts with known truth.

Counts are gamma-Poisson (negative binomial) around a per-cell, per-gene mean
built from gene base means, group (cell type) differential-expression factors
and library sizes; dropout removes counts with a probability that falls
logistically with the mean (Zappia, Phipson & Oshlack 2017). The AnnData it
returns keeps the truth beside the observation:

- ``X``: observed counts after dropout (CSR, what a method receives)
- ``layers["true_counts"]``: the counts before dropout (CSR; absent with ``truth=False``)
- ``layers["true_mean"]``: the noise-free gamma-Poisson mean, what a denoiser should recover
  (dense float32; absent with ``truth=False``)
- ``obs["group"]``: the cell type; ``var["de_groups"]``: groups where a gene is differentially expressed

Two generators share the model. ``chunk_cells=0`` draws the whole data set from one random
stream: the documented figures were made with it, so its draws must never change.
``chunk_cells>0`` makes the same first draws (gene means, cell groups, DE factors: the same
genes and cell types), then draws each block of cells' library sizes, counts and dropout from its
own child stream of the seed: memory is bounded by one block (plus the sparse result), the data
depend on the seed and ``chunk_cells`` only, and :func:`write_simulation` writes a million cells
to ``.h5ad`` without ever holding X.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scgapfill.data.atomic import atomic_path
from scgapfill.params import SimulationParams, parse


@dataclass
class _Genes:
    """Gene-level quantities, shared by every cell."""

    base_mean: np.ndarray  # (n_genes,)
    is_de: np.ndarray  # (n_groups, n_genes), bool
    factor: np.ndarray  # (n_groups, n_genes), DE fold (1 where not DE)


@dataclass
class _Block:
    """Consecutive cells: their annotations, observed counts and (optionally) truth."""

    group: np.ndarray
    lib_size: np.ndarray
    observed: sp.csr_matrix
    true_nonzero: int
    true_counts: Optional[sp.csr_matrix]
    true_mean: Optional[np.ndarray]


def simulate(params: SimulationParams | dict | None = None, **overrides) -> ad.AnnData:
    """Simulate a counts AnnData with ground truth; same parameters and seed give the same data.

    Parameters
    ----------
    params
        ``input.simulation`` parameters (a model or a dict); missing keys take their defaults.
    **overrides
        Single parameters on top of ``params``, validated with them.

    Returns
    -------
    AnnData
        X (CSR float32 counts after dropout), obs ``group`` and ``true_lib_size``, var
        ``base_mean`` and ``de_groups``, the truth layers when ``truth`` is on, and uns
        ``label_key`` and ``simulation`` (the parameters and the realised dropout rate).
    """
    p = _parse(params, overrides)
    genes, blocks = _generate(p)
    # Blocks are stacked as they come, so only one is ever held beside the growing result.
    observed, true_counts, true_mean = _CSRRows(p.n_genes), _CSRRows(p.n_genes), _Rows()
    groups, lib_sizes = [], []
    true_nonzero = 0
    for block in blocks:
        observed.append(block.observed)
        if p.truth:
            true_counts.append(block.true_counts)
            true_mean.append(block.true_mean)
        groups.append(block.group)
        lib_sizes.append(block.lib_size)
        true_nonzero += block.true_nonzero
    adata = ad.AnnData(
        X=observed.result(),
        obs=_obs(p, np.concatenate(groups), np.concatenate(lib_sizes)),
        var=_var(p, genes),
    )
    if p.truth:
        adata.layers["true_counts"] = true_counts.result()
        adata.layers["true_mean"] = true_mean.array
    adata.uns.update(_uns(p, adata.X.nnz, true_nonzero))
    return adata


def write_simulation(path: str | os.PathLike, params: SimulationParams | dict | None = None, **overrides) -> Path:
    """Write a simulation to an ``.h5ad`` file, block by block when ``chunk_cells > 0``.

    With ``chunk_cells > 0`` only one block of cells is in memory at a time (plus the per-cell
    annotations), so a million cells can be written for backed-mode benchmarks; the file holds
    what :func:`simulate` returns for the same parameters. With ``chunk_cells = 0`` the data set
    is simulated whole, then written.

    Parameters
    ----------
    path
        The ``.h5ad`` file; written beside it first and renamed, so a crash leaves no half file.
    params, **overrides
        As for :func:`simulate`.

    Returns
    -------
    Path
        ``path``.
    """
    p = _parse(params, overrides)
    with atomic_path(path, ".h5ad") as tmp:
        if p.chunk_cells == 0:
            simulate(p).write_h5ad(tmp)
        else:
            _write_blocks(tmp, p)
    return Path(path)


def _parse(params: SimulationParams | dict | None, overrides: dict) -> SimulationParams:
    values = params.model_dump() if isinstance(params, SimulationParams) else dict(params or {})
    # Overrides are validated with the rest, so a wrong one names its key (input.simulation.<key>).
    return parse("input", {"simulation": {**values, **overrides}}).simulation


def _generate(p: SimulationParams) -> tuple[_Genes, Iterator[_Block]]:
    """The gene-level draws and an iterator over the blocks of cells (one block when ``chunk_cells=0``)."""
    # Gene means, cell groups and DE factors come from the seed's own stream in either mode, so
    # the two modes simulate the same genes and cell types and differ only in the per-cell noise.
    rng = np.random.default_rng(p.seed)
    base_mean = rng.gamma(p.mean_shape, 1.0 / p.mean_rate, size=p.n_genes)
    group = rng.integers(0, p.n_groups, size=p.n_cells)
    genes = _Genes(base_mean, *_de_factors(p, rng))
    if p.chunk_cells == 0:
        # The rest of the same stream, in the original draw order: the documented figures' data.
        return genes, iter([_cells(p, genes, group, rng)])
    return genes, _blocks(p, genes, group)


def _blocks(p: SimulationParams, genes: _Genes, group: np.ndarray) -> Iterator[_Block]:
    """Blocks of ``chunk_cells`` cells, each drawn from its own child stream of the seed."""
    starts = range(0, p.n_cells, p.chunk_cells)
    # Children of the seed are independent of its own stream and of one another: a block's draws
    # depend on its index alone, never on how the blocks are consumed.
    for start, seq in zip(starts, np.random.SeedSequence(p.seed).spawn(len(starts))):
        yield _cells(p, genes, group[start:start + p.chunk_cells], np.random.default_rng(seq))


def _de_factors(p: SimulationParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Which genes are DE in which group, and one DE factor per group and gene (1 where not DE)."""
    is_de = rng.random((p.n_groups, p.n_genes)) < p.de_prob
    fold = rng.lognormal(p.de_loc, p.de_scale, size=(p.n_groups, p.n_genes))
    down = rng.random((p.n_groups, p.n_genes)) < p.de_down_prob
    return is_de, np.where(is_de, np.where(down, 1.0 / fold, fold), 1.0)


def _cells(p: SimulationParams, genes: _Genes, group: np.ndarray, rng: np.random.Generator) -> _Block:
    """Library sizes, counts and dropout of the cells of ``group``, drawn from ``rng``.

    The arithmetic is done in place where it can be (a block is a few cells x genes arrays at
    most); in-place and out-of-place give the same bits, which keeps ``chunk_cells=0`` unchanged.
    """
    lib_size = rng.lognormal(p.lib_loc, p.lib_scale, size=group.size)
    mean = genes.factor[group]
    mean *= genes.base_mean
    mean /= mean.sum(axis=1, keepdims=True)
    mean *= lib_size[:, None]

    counts = _true_counts(p, mean, rng)
    drop_prob = _drop_probability(p, mean)
    true_mean = mean.astype(np.float32) if p.truth else None
    del mean
    keep = rng.random(counts.shape) >= drop_prob
    del drop_prob

    true_nonzero = int(np.count_nonzero(counts))
    true_counts = sp.csr_matrix(counts) if p.truth else None
    counts *= keep
    observed = sp.csr_matrix(counts)
    observed.eliminate_zeros()
    return _Block(group, lib_size, observed, true_nonzero, true_counts, true_mean)


def _true_counts(p: SimulationParams, mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma-Poisson counts around ``mean``, float32."""
    # Biological coefficient of variation: gamma noise on the mean, then Poisson sampling.
    if p.bcv > 0:
        shape = 1.0 / p.bcv**2
        cell_mean = rng.gamma(shape, mean / shape)
    else:
        cell_mean = mean
    return rng.poisson(cell_mean).astype(np.float32)


def _drop_probability(p: SimulationParams, mean: np.ndarray) -> np.ndarray:
    """Logistic in log mean: ``1 / (1 + exp(-shape (log mean - mid)))``."""
    prob = np.log(mean)
    prob -= p.dropout_mid
    prob *= -p.dropout_shape
    np.exp(prob, out=prob)
    prob += 1.0
    np.divide(1.0, prob, out=prob)
    return prob


class _Rows:
    """Arrays stacked along their first axis into one array grown in place.

    ``ndarray.resize`` reallocates, and a large buffer is remapped rather than copied, so the
    stack costs its own size where concatenating the blocks would cost twice it.
    """

    def __init__(self):
        self.array: Optional[np.ndarray] = None
        self.owned = False

    def append(self, rows: np.ndarray) -> None:
        if self.array is None:
            self.array = rows  # kept as it is: a single block is the result
            return
        if not self.owned:
            # Our own buffer: a resize must never move memory a block's arrays still point to.
            self.array = self.array.copy()
            self.owned = True
        start = self.array.shape[0]
        self.array.resize((start + rows.shape[0], *rows.shape[1:]), refcheck=False)
        self.array[start:] = rows


class _CSRRows:
    """CSR blocks of rows stacked into one CSR matrix (their arrays grown in place, see _Rows)."""

    def __init__(self, n_columns: int):
        self.n_columns = n_columns
        self.data, self.indices = _Rows(), _Rows()
        self.row_nnz: list[np.ndarray] = []
        self.first: Optional[sp.csr_matrix] = None

    def append(self, block: sp.csr_matrix) -> None:
        self.first = block if not self.row_nnz else None
        self.data.append(block.data)
        self.indices.append(block.indices)
        self.row_nnz.append(np.diff(block.indptr))

    def result(self) -> sp.csr_matrix:
        if self.first is not None:
            return self.first
        row_nnz = np.concatenate(self.row_nnz)
        nnz = int(row_nnz.sum())
        # A 32-bit indptr while the nonzeros allow it: a 64-bit one would make scipy widen (copy) the indices.
        indptr = np.zeros(row_nnz.size + 1, dtype=np.int32 if nnz < np.iinfo(np.int32).max else np.int64)
        np.cumsum(row_nnz, out=indptr[1:])
        return sp.csr_matrix((self.data.array, self.indices.array, indptr), shape=(row_nnz.size, self.n_columns))


def _obs(p: SimulationParams, group: np.ndarray, lib_size: np.ndarray) -> pd.DataFrame:
    names = np.array([f"group{g}" for g in range(p.n_groups)], dtype=object)
    return pd.DataFrame(
        {"group": pd.Categorical(names[group]), "true_lib_size": lib_size},
        index=[f"cell{i}" for i in range(p.n_cells)],
    )


def _var(p: SimulationParams, genes: _Genes) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "base_mean": genes.base_mean,
            "de_groups": [",".join(f"group{g}" for g in np.flatnonzero(genes.is_de[:, j])) for j in range(p.n_genes)],
        },
        index=[f"gene{j}" for j in range(p.n_genes)],
    )


def _uns(p: SimulationParams, observed_nonzero: int, true_nonzero: int) -> dict:
    dropout_rate = float(1 - observed_nonzero / max(1, true_nonzero))
    return {"label_key": "group", "simulation": {**p.model_dump(), "dropout_rate": dropout_rate}}


def _write_blocks(path: Path, p: SimulationParams) -> None:
    """Write a chunked simulation to ``path`` one block at a time."""
    genes, blocks = _generate(p)
    groups, lib_sizes = [], []
    observed_nonzero = true_nonzero = 0
    with h5py.File(path, "w") as f:
        # An AnnData with no cells lays out the file (encodings, var, empty obsm/layers ...); X and
        # the layers then grow block by block, and obs and uns are written once all cells are drawn.
        ad.io.write_elem(f, "/", ad.AnnData(var=_var(p, genes)))
        for block in blocks:
            _append_sparse(f, "X", block.observed)
            if p.truth:
                _append_sparse(f["layers"], "true_counts", block.true_counts)
                _append_dense(f["layers"], "true_mean", block.true_mean)
            groups.append(block.group)
            lib_sizes.append(block.lib_size)
            observed_nonzero += block.observed.nnz
            true_nonzero += block.true_nonzero
        ad.io.write_elem(f, "obs", _obs(p, np.concatenate(groups), np.concatenate(lib_sizes)))
        ad.io.write_elem(f, "uns", _uns(p, observed_nonzero, true_nonzero))


def _append_sparse(group: h5py.Group, key: str, matrix: sp.csr_matrix) -> None:
    if key in group:
        ad.io.sparse_dataset(group[key]).append(matrix)
    else:
        # A 64-bit indptr from the start: 1M cells x 2000 genes can pass 2**31 nonzeros, and an
        # on-disk indptr cannot be widened by append.
        ad.io.write_elem(group, key, matrix, dataset_kwargs={"indptr_dtype": np.int64})


def _append_dense(group: h5py.Group, key: str, array: np.ndarray) -> None:
    if key in group:
        dataset = group[key]
        start = dataset.shape[0]
        dataset.resize(start + array.shape[0], axis=0)
        dataset[start:] = array
    else:
        ad.io.write_elem(group, key, array, dataset_kwargs={"maxshape": (None, array.shape[1])})
