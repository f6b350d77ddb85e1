"""The data_processing nodes, called one by one with plain-dict parameters as Kedro passes them."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from scgapfill.params import ParameterError
from scgapfill.pipelines.data_processing import nodes


@pytest.fixture
def processed(small_adata: ad.AnnData, tiny_params: dict) -> ad.AnnData:
    qc = nodes.quality_control(small_adata, tiny_params["qc"])
    normed = nodes.normalize(qc, tiny_params["normalize"])
    return nodes.select_genes(normed, tiny_params["hvg"])


def test_load_counts_simulated(tiny_params: dict, small_adata: ad.AnnData) -> None:
    adata = nodes.load_counts(tiny_params["input"])
    assert adata.shape == (120, 80)
    assert sp.issparse(adata.X)
    # Same simulation parameters as the small_adata fixture: the same counts.
    assert (adata.X != small_adata.X).nnz == 0
    assert adata.uns["label_key"] == "group"


def test_load_counts_rejects_bad_parameters(tiny_params: dict) -> None:
    with pytest.raises(ParameterError, match=r"input\.simulation\.n_genes"):
        nodes.load_counts({**tiny_params["input"], "simulation": {"n_genes": 1}})


def test_processing_nodes_chain(processed: ad.AnnData, small_adata: ad.AnnData, tiny_params: dict) -> None:
    assert processed.n_vars == tiny_params["hvg"]["n_top_genes"]
    assert set(processed.var_names) <= set(small_adata.var_names)
    counts = processed.layers["counts"].toarray()
    np.testing.assert_array_equal(counts, small_adata[processed.obs_names, processed.var_names].X.toarray())
    # size_factor is the cell's total before gene selection, i.e. over all genes kept by QC.
    assert (processed.obs["size_factor"].to_numpy() >= counts.sum(axis=1)).all()
    assert processed.n_obs <= small_adata.n_obs
