"""The Python API takes its input as the pipeline does: one function (``io.checked_counts``) finds the
counts, refuses what is not raw counts with one line, and tells duplicate names apart; genes and cells
without counts are reported, not filled."""

from __future__ import annotations

import logging
import re
from functools import partial
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scgapfill
from scgapfill.data import io
from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.model import GapFill

README = Path(__file__).resolve().parents[2] / "README.md"
API_FIX = ("put the raw UMI counts in adata.layers['counts'] (or in X), or name the layer that holds them "
           "with layer= (layer=None: X)")


def gene_names(n_genes: int) -> list[str]:
    return [f"gene{i:03d}" for i in range(n_genes)]


def counts_in_x(counts: sp.csr_matrix) -> ad.AnnData:
    """Counts in X and no layer, as ``sc.read_10x_h5`` returns them."""
    return ad.AnnData(X=sp.csr_matrix(counts, dtype=np.float32),
                      obs=pd.DataFrame(index=[f"cell{i}" for i in range(counts.shape[0])]),
                      var=pd.DataFrame(index=gene_names(counts.shape[1])))


@pytest.fixture
def quick(model_params, train_params):
    """``scgapfill.impute`` with the tiny model and one epoch."""
    return partial(scgapfill.impute, model=model_params, train={**train_params.model_dump(), "max_epochs": 1})


@pytest.mark.parametrize("bad", ["log-normalised", np.nan, np.inf, -1.0])
def test_values_that_are_not_raw_counts_are_refused_by_the_api_as_by_the_pipeline(counts, tmp_path, bad):
    adata = counts_in_x(counts)
    if bad == "log-normalised":
        adata.X = sp.csr_matrix(lognorm(counts, size_factors(counts)), dtype=np.float32)
    else:  # far into the data: the last cell
        dense = adata.X.toarray()
        dense[-1, 5] = bad
        adata.X = sp.csr_matrix(dense)
    path = tmp_path / "bad.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(ValueError) as pipeline:
        io.load_input({"path": str(path)})
    detail = re.search(r"X is not raw counts (\(\d+ value\(s\) .*?\))(?: and|;)", str(pipeline.value)).group(1)

    with pytest.raises(ValueError) as default:
        scgapfill.impute(adata)
    assert str(default.value) == (f"adata.X is not raw counts {detail} and there is no layers['counts'] with raw "
                                  f"counts; {API_FIX}")
    with pytest.raises(ValueError) as in_x:
        scgapfill.impute(adata, layer=None)
    assert str(in_x.value) == f"adata.X is not raw counts {detail}; {API_FIX}"
    assert list(adata.layers) == [] and "gapfill" not in adata.uns and "gapfill_modelled" not in adata.var
    if bad != "log-normalised":
        assert detail.endswith(f"at cell 'cell{counts.shape[0] - 1}', gene 'gene005')")


def test_counts_are_read_from_the_counts_layer_else_from_x(counts):
    logged = lognorm(counts, size_factors(counts)).astype(np.float32)
    both = ad.AnnData(X=logged, layers={"counts": counts.astype(np.float32)})
    assert io.checked_counts(both).where == "layers['counts']"
    assert io.checked_counts(counts_in_x(counts)).where == "X"
    with pytest.raises(ValueError, match=r"^adata\.layers\['counts'\] is not raw counts \(.*\); put the raw UMI"):
        io.checked_counts(ad.AnnData(X=counts.astype(np.float32), layers={"counts": logged}))
    with pytest.raises(KeyError, match=r"adata has no layer 'raw' \(layers: \['counts'\]\); name the layer that "
                                       r"holds the raw counts with layer=, or layer=None for X"):
        io.checked_counts(both, "raw")


def test_the_readme_example_runs_on_counts_in_x_as_read_10x_h5_leaves_them(counts, tmp_path, quick, monkeypatch):
    import scanpy as sc
    from test_io import write_10x_h5

    path = write_10x_h5(counts_in_x(counts), tmp_path / "filtered_feature_bc_matrix.h5")
    block = README.read_text().split("## From Python")[1].split("```python\n")[1].split("```")[0]
    example = block.split("\n\n")[1]  # the one-call paragraph, after the imports
    assert "sc.read_10x_h5(" in example and "scgapfill.impute(adata)" in example
    monkeypatch.setattr(scgapfill, "impute", quick)  # the example as written, with a tiny model
    namespace = {"sc": sc, "scgapfill": scgapfill}
    exec(example.replace('"filtered_feature_bc_matrix.h5"', repr(str(path))), namespace)
    adata = namespace["adata"]
    assert list(adata.layers) == ["imputed", "imputed_counts"]  # nothing but the counts in X before
    assert adata.layers["imputed"].shape == counts.shape and np.isfinite(adata.layers["imputed"]).all()
    assert (sp.csr_matrix(adata.X) != counts).nnz == 0  # the counts themselves untouched
    zeros = counts.toarray() == 0
    assert (adata.layers["imputed"][zeros] > 0).any()  # gaps filled


def test_a_gene_or_cell_without_counts_is_reported_not_filled(counts, quick, caplog):
    dense = counts.toarray()
    dense[:, 7] = 0  # a gene seen in no cell: the pipeline's QC removes it, the model must not fill it
    dense[5] = 0  # an empty cell: QC removes it, and it has no depth to impute at
    adata = counts_in_x(sp.csr_matrix(dense))
    with caplog.at_level(logging.WARNING, logger="scgapfill"):
        quick(adata)
    layer, in_counts = adata.layers["imputed"], adata.layers["imputed_counts"]
    assert (layer[:, 7] == 0).all() and (in_counts[:, 7] == 0).all()
    assert adata.var["gapfill_modelled"].tolist() == [j != 7 for j in range(dense.shape[1])]
    assert (layer[5] == 0).all() and (in_counts[5] == 0).all()
    assert adata.uns["gapfill"]["cells_skipped_no_counts"] == 1
    assert (layer[np.arange(dense.shape[0]) != 5][dense[np.arange(dense.shape[0]) != 5] == 0] > 0).any()
    assert "1 genes have no count in any cell (e.g. ['gene007']) and are left out of the model" in caplog.text
    assert "1 cells have no counts (e.g. ['cell5']) and do not train" in caplog.text
    assert "1 cells have no counts on the model's genes and are skipped: ['cell5']" in caplog.text


def test_duplicate_names_are_reported_and_adata_keeps_its_own(counts, model_params, train_params, caplog):
    adata = counts_in_x(counts)
    model = GapFill(model=model_params, train={**train_params.model_dump(), "max_epochs": 1}).fit(adata)
    expected = model.impute(adata, inplace=False).layers["imputed"]
    twins = adata.copy()
    names = list(twins.obs_names)
    names[3] = names[2]
    twins.obs_names = names
    with caplog.at_level(logging.WARNING, logger="scgapfill"):
        model.impute(twins)
    assert list(twins.obs_names) == names  # not renamed behind the user's back
    np.testing.assert_array_equal(twins.layers["imputed"], expected)  # row for row
    assert ("adata has 1 duplicate cell names (e.g. ['cell2']): the repeats are told apart as 'cell2-1', "
            "'cell2-2', ...; adata's names are left as they are") in caplog.text
