"""AnnData in, matrices out and back: which counts a model reads, and its output on the data's genes."""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scgapfill.data.io import AUTO, checked_counts
from scgapfill.data.normalization import (as_composition, counts_from_lognorm, expected_log_of_levels, lognorm,
                                          size_factors)
from scgapfill.graph.smoothing import neighbour_fill
from scgapfill.params import ImputeParams

# The principal components on which the neighbours that fill the genes the model does not estimate are found.
UNMODELLED_PCS = 30


def on_data_genes(
    out: np.ndarray, counts: sp.csr_matrix, genes: list[str], model_genes: list[str], params: ImputeParams,
    graph: str = "expression", positions: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The model's output as a layer on the data's genes, and which of them the model estimated.

    When the data and the model have the same genes, ``out`` (from ``impute_counts`` with
    ``params``) is only reordered. Otherwise ``out`` must be on the observed-library scale (levels
    per 1e4 counts of the model's genes): genes the model does not know carry their observed values,
    ``log1p(counts / size_factor * 1e4)`` with the size factor over all the data's genes, or with
    ``impute.unmodelled: neighbours`` (the default) every entry of theirs averaged over the cell and its
    ``unmodelled_k`` nearest cells, ``unmodelled_steps`` times (:func:`~scgapfill.graph.smoothing.neighbour_fill`);
    the model's genes are put on that scale (with ``impute.form: expected_log`` as the expected
    log-normalised value at the cell's total over all genes, and those neighbours found on them), and
    with ``impute.scale: composition`` the whole cell is then rescaled to 1e4, so the filled mass
    shrinks every observed gene alike. With ``observed_library``, ``fill_only_zeros`` and
    ``unmodelled: observed`` every observed entry equals that log-normalisation exactly.
    ``graph`` (``model.context_graph``) and ``positions`` choose the neighbours of that fill as the
    context's are chosen (nearest spots in the tissue for ``spatial``, both sets for ``both``).
    """
    column_of = {g: j for j, g in enumerate(model_genes)}
    modelled = np.array([g in column_of for g in genes], dtype=bool)
    source = np.array([column_of[g] for g in genes if g in column_of], dtype=np.int64)
    if same_genes(genes, model_genes):
        return in_column_order(out, source), modelled
    sf_all = size_factors(counts)
    sf_modelled = np.asarray(counts[:, modelled].sum(axis=1), dtype=np.float64).ravel()
    observed = sp.csr_matrix(lognorm(counts, sf_all), dtype=np.float32)
    layer = observed.toarray()
    if params.form == "expected_log":
        estimates = expected_log_of_levels(out[:, source], sf_modelled, sf_all)
    else:
        # The model's levels are per 1e4 counts of the modelled genes: rescale to the cell's total count.
        ratio = (sf_modelled / sf_all)[:, None]
        estimates = np.log1p(np.expm1(out[:, source].astype(np.float64)) * ratio).astype(np.float32)
    if params.unmodelled == "neighbours" and not modelled.all():
        found_on = estimates if params.form == "expected_log" else out
        layer[:, ~modelled] = neighbour_fill(observed[:, ~modelled], found_on, params.unmodelled_k, UNMODELLED_PCS,
                                             seed=0, mode=graph if positions is not None else "expression",
                                             positions=positions, steps=params.unmodelled_steps)
    layer[:, modelled] = estimates
    if params.scale == "composition":
        return as_composition(layer), modelled
    if params.fill_only_zeros and params.form == "level":
        # The observed counts kept where the layer estimates from them: every gene but those the
        # neighbours fill (there the average replaces each entry, its own count weighing 1/(k + 1)).
        carried = np.flatnonzero(modelled if params.unmodelled == "neighbours" else np.ones_like(modelled))
        coo = observed[:, carried].tocoo()
        layer[coo.row, carried[coo.col]] = coo.data
    return layer, modelled


def in_column_order(out: np.ndarray, columns: np.ndarray, block_rows: int = 4096) -> np.ndarray:
    """``out[:, columns]`` as float32, made in place a block of rows at a time: the output is the one
    dense cells x genes array of imputation, and a reordered copy of it would double the peak."""
    out = np.asarray(out, dtype=np.float32)
    if np.array_equal(columns, np.arange(out.shape[1])):
        return out
    for start in range(0, out.shape[0], block_rows):
        rows = slice(start, start + block_rows)
        out[rows] = out[rows][:, columns]
    return out


def same_genes(genes: list[str], model_genes: list[str]) -> bool:
    return len(genes) == len(model_genes) and set(genes) == set(model_genes)


def at_observed_depth(values: np.ndarray, counts: sp.csr_matrix) -> np.ndarray:
    """The imputed profile in counts at each cell's observed depth (the cell's total count):
    ``expm1(values) * size_factor / 1e4``, float32. The depth a model estimates before dropout leans
    on its dropout curve, which overstated mass on real UMI data (docs/model.md); the observed depth
    is what the counts say."""
    return counts_from_lognorm(values, size_factors(counts)).astype(np.float32)

