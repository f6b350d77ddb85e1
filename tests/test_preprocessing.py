"""QC, normalisation and gene selection on matrices whose answer is known."""

from __future__ import annotations

import logging
import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scgapfill.data import preprocessing
from scgapfill.params import ParameterError

GENES = ["MT-CO1", "mt-nd2", "A", "B", "C", "D", "E", "RARE", "BADONLY"]

# cell -> {gene: count}; comments give (detected genes, total counts, % mito).
CELLS = {
    "keep1": {"MT-CO1": 2, "A": 10, "B": 10, "C": 10, "D": 8},  # 5, 40, 5%
    "keep2": {"MT-CO1": 1, "A": 5, "C": 5, "D": 5, "E": 5, "RARE": 1},  # 6, 22, 4.5%
    "keep_edge": {"A": 40, "B": 40, "mt-nd2": 20},  # 3, 100, 20%: exactly at every threshold
    "low_genes": {"A": 1, "BADONLY": 1},  # 2 < min_genes
    "high_counts": {"A": 50, "B": 50, "C": 1, "BADONLY": 3},  # 4, 104 > max_counts
    "high_mito": {"MT-CO1": 10, "mt-nd2": 5, "A": 5, "C": 5, "D": 5},  # 5, 30, 50% > max_pct_mito
    "low_and_mito": {"MT-CO1": 5, "A": 1},  # 2 genes and 83% mito: counted once, under min_genes
}
QC = {"min_genes": 3, "max_counts": 100, "max_pct_mito": 20, "mito_prefix": "MT-", "min_cells": 2}


def qc_adata() -> ad.AnnData:
    frame = pd.DataFrame(0.0, index=list(CELLS), columns=GENES)
    for cell, counts in CELLS.items():
        for gene, value in counts.items():
            frame.loc[cell, gene] = value
    return ad.AnnData(X=sp.csr_matrix(frame.to_numpy(np.float32)), obs=pd.DataFrame(index=frame.index),
                      var=pd.DataFrame(index=frame.columns))


def _removed(caplog: pytest.LogCaptureFixture, key: str) -> int:
    for record in caplog.records:
        match = re.search(rf"(\d+) (?:cells|genes) removed by {re.escape(key)}", record.getMessage())
        if match:
            return int(match.group(1))
    raise AssertionError(f"no log line for {key}: {caplog.text}")


def test_qc_removes_exactly_the_bad_cells_and_rare_genes(caplog: pytest.LogCaptureFixture) -> None:
    adata = qc_adata()
    with caplog.at_level(logging.INFO, logger="scgapfill.data.preprocessing"):
        out = preprocessing.quality_control(adata, QC)

    assert list(out.obs_names) == ["keep1", "keep2", "keep_edge"]
    # mt-nd2, E and RARE are seen in one kept cell only; BADONLY only in removed cells.
    assert list(out.var_names) == ["MT-CO1", "A", "B", "C", "D"]
    expected = qc_adata()[["keep1", "keep2", "keep_edge"], ["MT-CO1", "A", "B", "C", "D"]].X.toarray()
    np.testing.assert_array_equal(out.X.toarray(), expected)
    assert out.var.loc["MT-CO1", "mt"]

    assert _removed(caplog, "qc.min_genes=3") == 2
    assert _removed(caplog, "qc.max_counts=100") == 1
    assert _removed(caplog, "qc.max_pct_mito=20") == 1
    assert _removed(caplog, "qc.min_cells=2") == 4
    assert out.uns["qc"]["genes_removed"] == 4
    assert (out.uns["qc"]["cells_before"], out.uns["qc"]["genes_before"]) == (7, 9)


def test_qc_lowercase_mito_prefix_matches_case_insensitively() -> None:
    out = preprocessing.quality_control(qc_adata(), {**QC, "mito_prefix": "mt-", "min_cells": 0})
    assert out.var.loc[["MT-CO1", "mt-nd2"], "mt"].all()
    assert not out.var.loc[["A", "B"], "mt"].any()
    assert "high_mito" not in out.obs_names


def test_qc_optional_filters_can_be_disabled() -> None:
    out = preprocessing.quality_control(qc_adata(), {**QC, "max_counts": None, "max_pct_mito": None, "min_cells": 0})
    assert list(out.obs_names) == ["keep1", "keep2", "keep_edge", "high_counts", "high_mito"]
    assert out.n_vars == len(GENES)


def test_qc_leaves_input_untouched() -> None:
    adata = qc_adata()
    before = adata.X.toarray().copy()
    preprocessing.quality_control(adata, QC)
    assert adata.shape == (7, 9)
    np.testing.assert_array_equal(adata.X.toarray(), before)
    assert "mt" not in adata.var and "total_counts" not in adata.obs


@pytest.mark.parametrize(
    ("override", "key"),
    [({"min_genes": 1000}, "qc.min_genes"), ({"min_cells": 1000}, "qc.min_cells")],
)
def test_qc_removing_everything_names_the_parameter(override: dict, key: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{key}=1000")) as info:
        preprocessing.quality_control(qc_adata(), {**QC, **override})
    assert f"lower {key}" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("shape", [(0, 9), (7, 0)])
def test_qc_on_data_without_cells_or_genes_does_not_blame_the_thresholds(shape: tuple) -> None:
    expected = rf"{shape[0]} cells x {shape[1]} genes: nothing to QC; check input.path"
    with pytest.raises(ValueError, match=expected) as info:
        preprocessing.quality_control(ad.AnnData(X=sp.csr_matrix(shape, dtype=np.float32)), QC)
    assert "lower" not in str(info.value)


def test_qc_min_cells_zero_still_removes_genes_seen_in_no_cell(caplog: pytest.LogCaptureFixture) -> None:
    # With qc.min_cells=0 a gene no cell expresses reached the model, which filled it in every cell.
    adata = qc_adata()
    adata = ad.concat([adata, ad.AnnData(X=sp.csr_matrix((adata.n_obs, 1), dtype=np.float32),
                                         obs=adata.obs, var=pd.DataFrame(index=["NEVER"]))], axis=1)
    with caplog.at_level(logging.INFO, logger="scgapfill.data.preprocessing"):
        out = preprocessing.quality_control(adata, {**QC, "max_counts": None, "max_pct_mito": None, "min_cells": 0})
    assert "NEVER" not in out.var_names
    assert list(out.var_names) == GENES  # every gene seen in a kept cell stays
    assert _removed(caplog, "qc.min_cells=0") == 1
    assert "1 of them seen in no kept cell" in caplog.text
    assert out.uns["qc"]["genes_unseen"] == 1


def test_qc_invalid_parameter() -> None:
    with pytest.raises(ParameterError, match=r"qc\.max_pct_mito"):
        preprocessing.quality_control(qc_adata(), {**QC, "max_pct_mito": 150})


# --- normalize -------------------------------------------------------------------


@pytest.mark.parametrize("target_sum", [1e4, 100.0])
def test_normalize(small_adata: ad.AnnData, target_sum: float) -> None:
    counts = small_adata.X.toarray().astype(np.float64)
    out = preprocessing.normalize(small_adata, {"target_sum": target_sum})

    assert sp.issparse(out.layers["counts"])
    np.testing.assert_array_equal(out.layers["counts"].toarray(), counts)
    np.testing.assert_allclose(out.obs["size_factor"].to_numpy(), counts.sum(axis=1), rtol=1e-6)
    expected = np.log1p(counts / counts.sum(axis=1, keepdims=True) * target_sum)
    x = out.X.toarray() if sp.issparse(out.X) else np.asarray(out.X)
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-6)
    assert out.uns["normalize"]["target_sum"] == target_sum

    # The input is untouched.
    assert "counts" not in small_adata.layers and "size_factor" not in small_adata.obs
    np.testing.assert_array_equal(small_adata.X.toarray(), counts)


def test_normalize_refuses_empty_cells() -> None:
    x = np.array([[1, 2, 0], [0, 0, 0], [3, 0, 1]], dtype=np.float32)
    adata = ad.AnnData(X=sp.csr_matrix(x))
    with pytest.raises(ValueError, match="qc.min_genes"):
        preprocessing.normalize(adata, {})


# --- select_genes ----------------------------------------------------------------


def test_select_genes_keeps_n_top_and_prefers_de_genes() -> None:
    import scgapfill

    adata = preprocessing.normalize(scgapfill.simulate(n_cells=300, n_genes=150, n_groups=3, seed=0), {})
    out = preprocessing.select_genes(adata, {"n_top_genes": 30})
    assert out.n_vars == 30
    assert out.var["highly_variable"].all()
    # Differentially expressed genes vary between cell types: they are over-represented among the kept.
    de_rate_all = (adata.var["de_groups"] != "").mean()
    de_rate_kept = (out.var["de_groups"] != "").mean()
    assert de_rate_kept >= 2 * de_rate_all
    # Kept genes stay in their original order, with their counts layer.
    positions = [list(adata.var_names).index(g) for g in out.var_names]
    assert positions == sorted(positions)
    np.testing.assert_array_equal(out.layers["counts"].toarray(), adata[:, out.var_names].layers["counts"].toarray())
    assert adata.n_vars == 150  # input untouched


def test_select_genes_keeps_all_when_fewer(small_adata: ad.AnnData) -> None:
    normed = preprocessing.normalize(small_adata, {})
    out = preprocessing.select_genes(normed, {"n_top_genes": 1000})
    assert list(out.var_names) == list(normed.var_names)
    assert out.var["highly_variable"].all()
    assert "highly_variable" not in normed.var
