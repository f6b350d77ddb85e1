"""AnnData in, matrices out and back: which counts a model reads, and its output on the data's genes."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from ..normalization import lognorm, size_factors


def counts_of(adata: ad.AnnData, layer: str | None) -> tuple[sp.csr_matrix, list[str]]:
    """The raw counts of ``adata.layers[layer]`` (``X`` when ``layer`` is None) and the gene names."""
    if layer is not None and layer not in adata.layers:
        raise KeyError(
            f"adata has no layer {layer!r} (layers: {list(adata.layers)}); pass layer=None to read counts from X"
        )
    matrix = adata.X if layer is None else adata.layers[layer]
    return sp.csr_matrix(matrix), [str(g) for g in adata.var_names]


def on_data_genes(
    out: np.ndarray, counts: sp.csr_matrix, genes: list[str], model_genes: list[str], fill_only_zeros: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The model's output (model genes, relative to their total) as a layer on the data's genes.

    Returns the dense float32 layer, ``log1p(counts / size_factor * 1e4)`` with the size factor over
    all the data's genes, and which of the data's genes the model estimated. Genes the model does
    not know carry their observed values. When the data has no such gene, both size factors are
    the same and the output is only reordered, value for value.
    """
    column_of = {g: j for j, g in enumerate(model_genes)}
    modelled = np.array([g in column_of for g in genes], dtype=bool)
    source = np.array([column_of[g] for g in genes if g in column_of], dtype=np.int64)
    if modelled.all():
        return np.ascontiguousarray(out[:, source], dtype=np.float32), modelled
    sf_all = size_factors(counts)
    sf_modelled = np.asarray(counts[:, modelled].sum(axis=1), dtype=np.float64).ravel()
    observed = sp.csr_matrix(lognorm(counts, sf_all), dtype=np.float32)
    layer = observed.toarray()
    # The model's levels are per 1e4 counts of the modelled genes: rescale to the cell's total count.
    ratio = (sf_modelled / sf_all)[:, None]
    layer[:, modelled] = np.log1p(np.expm1(out[:, source].astype(np.float64)) * ratio).astype(np.float32)
    if fill_only_zeros:
        coo = observed.tocoo()
        layer[coo.row, coo.col] = coo.data
    return layer, modelled

