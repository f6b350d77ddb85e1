"""Inference against a fixed reference of cells: the graph no longer spans every cell, memory no longer grows."""

from __future__ import annotations

import tracemalloc

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import gene_names, make_counts

from scgapfill.glue.datasets import AnnDataDataset
from scgapfill.infer import reference
from scgapfill.infer.imputation import impute_counts
from scgapfill.infer.reference import BackedCounts, ReferenceImputation, read_with_reference
from scgapfill.model import GapFill
from scgapfill.params import ImputeParams, parse
from scgapfill.pipelines.inference.nodes import impute_new, load_aligned_counts
from scgapfill.train.fit import fit_gapfill

PARAMS = ImputeParams(batch_size=16, form="level", fill_only_zeros=True, output_smoothing=0.5, smoothing_neighbours="imputed")


@pytest.fixture(scope="module")
def bundle(counts, layout, model_params, train_params):
    return fit_gapfill(counts, layout, model_params, train_params)


def write_counts(path, counts: sp.csr_matrix) -> None:
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(counts.shape[0])])
    ad.AnnData(X=sp.csr_matrix(counts, dtype=np.float32), obs=obs,
               var=pd.DataFrame(index=gene_names(counts.shape[1]))).write_h5ad(path)


def impute_file(bundle, path, out, reference_cells: int, params: ImputeParams = PARAMS, chunk_size: int = 32):
    backed, report = read_with_reference(path, None, bundle.gene_names, chunk_size, reference_cells, seed=0)
    AnnDataDataset(filepath=str(out)).save(ReferenceImputation(bundle, backed, params, report))
    return ad.read_h5ad(out), backed


@pytest.mark.parametrize("neighbours", ["input", "imputed"])
def test_a_reference_of_every_cell_gives_the_whole_graph_imputation(bundle, counts, tmp_path, neighbours):
    # The same PCA, neighbours, walk and smoothing as the graph over every cell: only float rounding
    # (the reference's estimates are averaged in float32) and the approximate search may differ.
    params = PARAMS.model_copy(update={"smoothing_neighbours": neighbours})
    write_counts(tmp_path / "new.h5ad", counts)
    out, _ = impute_file(bundle, tmp_path / "new.h5ad", tmp_path / "out.h5ad", counts.shape[0], params)
    np.testing.assert_allclose(out.layers["imputed"], impute_counts(bundle, counts, params), rtol=1e-4, atol=1e-4)
    assert out.uns["gapfill"]["reference_cells"] == counts.shape[0]


@pytest.mark.parametrize("search", ["exact", "approximate"])
def test_a_smaller_reference_writes_the_whole_result_close_to_the_whole_graph(bundle, tmp_path, search, monkeypatch):
    if search == "approximate":
        monkeypatch.setattr(reference, "EXACT_SEARCH_MAX_CELLS", 10)
    counts = make_counts(600, seed=4)
    with_stored_zeros = counts.copy()
    with_stored_zeros.data[::7] = 0  # e.g. held-out entries masked in place: unobserved, never kept as observed
    counts = with_stored_zeros.copy()
    counts.eliminate_zeros()
    write_counts(tmp_path / "new.h5ad", with_stored_zeros)
    out, backed = impute_file(bundle, tmp_path / "new.h5ad", tmp_path / "out.h5ad", 150)
    assert len(backed.reference_rows) == 150 and backed.reference.shape == (150, counts.shape[1])
    assert (out.layers["counts"] != counts).nnz == 0, "the counts are written whole, chunk by chunk"
    expected_x = sp.csr_matrix(np.log1p(counts.multiply(1e4 / counts.sum(axis=1))), dtype=np.float32)
    np.testing.assert_allclose(out.X.toarray(), expected_x.toarray(), rtol=1e-6)
    assert list(out.obs_names) == [f"cell{i}" for i in range(600)]
    np.testing.assert_allclose(out.obs["size_factor"], np.asarray(counts.sum(axis=1)).ravel())
    np.testing.assert_allclose(np.expm1(out.layers["imputed"].astype(np.float64)).sum(axis=1), 1e4, rtol=1e-4)
    observed = counts.toarray() > 0
    np.testing.assert_allclose(out.layers["imputed"][observed], expected_x.toarray()[observed] + 0, rtol=0.2)
    whole = impute_counts(bundle, counts, PARAMS)
    filled = ~observed
    # Neighbours among 150 cells rather than 600: nearby, not the same.
    assert np.corrcoef(out.layers["imputed"][filled], whole[filled])[0, 1] > 0.95
    assert not np.allclose(out.layers["imputed"], whole)


def test_the_reference_is_drawn_by_the_seed_and_skips_cells_without_counts(bundle, tmp_path, caplog):
    counts = make_counts(300, seed=5).tolil()
    counts[[3, 50, 51], :] = 0
    write_counts(tmp_path / "new.h5ad", sp.csr_matrix(counts))
    model = GapFill.from_bundle(bundle)
    settings = {"chunk_size": 64, "reference_cells": 100}
    aligned, report = load_aligned_counts({"path": str(tmp_path / "new.h5ad")}, model, settings)
    again, _ = load_aligned_counts({"path": str(tmp_path / "new.h5ad")}, model, settings)
    backed = aligned["counts"]
    assert isinstance(backed, BackedCounts) and backed.shape == (297, counts.shape[1])
    assert report["cells_skipped_no_counts"] == 3 and "3 cells have no counts" in caplog.text
    assert not {"cell3", "cell50", "cell51"} & set(backed.obs.index)
    np.testing.assert_array_equal(backed.reference_rows, again["counts"].reference_rows)
    assert 95 <= len(backed.reference_rows) <= 100
    kept_rows = [int(name[4:]) for name in backed.obs.index[backed.reference_rows]]
    assert (backed.reference != sp.csr_matrix(counts)[kept_rows]).nnz == 0
    result = impute_new(model, aligned, report, settings)
    assert isinstance(result, ReferenceImputation)
    AnnDataDataset(filepath=str(tmp_path / "out.h5ad")).save(result)
    assert ad.read_h5ad(tmp_path / "out.h5ad").n_obs == 297
    # At or below the reference's size the graph spans every cell, as before.
    settings["reference_cells"] = 300
    whole, _ = load_aligned_counts({"path": str(tmp_path / "new.h5ad")}, model, settings)
    assert sp.issparse(whole["counts"]) and whole["counts"].shape[0] == 297


def test_memory_does_not_grow_with_the_cells_beyond_the_reference(bundle, tmp_path):
    model = GapFill.from_bundle(bundle)

    def peak_bytes(n_cells: int, reference_cells: int) -> int:
        """Python's traced peak (numpy arrays included) of reading, imputing and writing ``n_cells`` cells."""
        path = tmp_path / f"new_{n_cells}.h5ad"
        if not path.exists():
            write_counts(path, make_counts(n_cells, seed=6))
        settings = {"chunk_size": 64, "reference_cells": reference_cells}
        for trace in (False, True):  # the first run imports and compiles what the second measures
            if trace:
                tracemalloc.start()
            try:
                aligned, report = load_aligned_counts({"path": str(path)}, model, settings)
                AnnDataDataset(filepath=str(tmp_path / "out.h5ad")).save(impute_new(model, aligned, report, settings))
                del aligned
                peak = tracemalloc.get_traced_memory()[1] if trace else 0
            finally:
                tracemalloc.stop()
        return peak

    # 8x the cells: the reference and one chunk are the same; only a few numbers per cell grow.
    small, large = peak_bytes(400, 100), peak_bytes(3200, 100)
    assert large < 1.5 * small, (small, large)
    # The graph over every cell holds every cell's counts: the same measure grows with them.
    assert peak_bytes(3200, 0) > 3 * peak_bytes(400, 0)


def test_a_reference_too_small_is_refused_by_name():
    with pytest.raises(ValueError, match="reference_cells"):
        parse("inference", {"reference_cells": 10})
    assert parse("inference", {"reference_cells": 0}).reference_cells == 0
