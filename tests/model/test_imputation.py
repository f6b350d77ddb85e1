"""Imputation with an untrained bundle (random weights): fast, and enough for shapes and bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.infer.imputation import align_genes, impute_counts
from scgapfill.nn import UNet, input_channels
from scgapfill.nn.bundle import GapFillBundle
from scgapfill.params import ImputeParams
from scgapfill.train.data import GeneScaler


# The estimates before the cell is rescaled to a composition: the formulas below are written on them.
FILL_ALL = ImputeParams(form="level", fill_only_zeros=False, scale="observed_library")
KEEP = ImputeParams(form="level", fill_only_zeros=True, scale="observed_library")


@pytest.fixture(scope="module")
def untrained(counts, layout, model_params, train_params) -> GapFillBundle:
    torch.manual_seed(0)
    net = UNet(input_channels(True), model_params.base_channels, model_params.depth, model_params.dropout)
    scaler = GeneScaler.fit(lognorm(counts, size_factors(counts)))
    return GapFillBundle(
        state_dict=net.state_dict(),
        model_params=model_params.model_dump(),
        train_params=train_params.model_dump(),
        layout=layout,
        scaler=scaler.to_dict(),
        gene_names=list(layout["genes"]),
    )


def test_align_genes_reorders_fills_missing_and_reports():
    data = sp.csr_matrix(np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]))
    aligned, report = align_genes(data, ["c", "a", "x", "b"], ["a", "b", "c", "d"])
    np.testing.assert_array_equal(aligned.toarray(), [[2.0, 4.0, 1.0, 0.0], [6.0, 8.0, 5.0, 0.0]])
    assert sp.isspmatrix_csr(aligned)
    assert report["n_model_genes"] == 4 and report["n_present"] == 3
    assert report["n_missing"] == 1 and report["missing_genes"] == ["d"]
    assert report["n_extra"] == 1 and report["extra_genes"] == ["x"]


def test_align_genes_refuses_less_than_half_overlap():
    data = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"only 1 of the model's 4 genes.*missing e\.g\. \['b', 'c', 'd'\]"):
        align_genes(data, ["a", "y", "z"], ["a", "b", "c", "d"])


def test_align_genes_refuses_duplicate_names():
    with pytest.raises(ValueError, match="not unique"):
        align_genes(np.ones((1, 2)), ["a", "a"], ["a"])


def test_output_is_dense_float32_in_model_gene_order(untrained, counts):
    out = impute_counts(untrained, counts, FILL_ALL.model_copy(update={"batch_size": 32}))
    assert out.shape == counts.shape and out.dtype == np.float32 and np.isfinite(out).all()
    # the same cells with columns shuffled, then aligned, give the same answer
    order = np.random.default_rng(1).permutation(counts.shape[1])
    shuffled_names = [untrained.gene_names[i] for i in order]
    aligned, report = align_genes(counts[:, order], shuffled_names, untrained.gene_names)
    assert report["n_missing"] == 0
    np.testing.assert_allclose(
        impute_counts(untrained, aligned, FILL_ALL.model_copy(update={"batch_size": 32})), out, rtol=1e-5, atol=1e-6
    )


def test_batch_size_does_not_change_the_result(untrained, counts):
    np.testing.assert_allclose(
        impute_counts(untrained, counts, FILL_ALL.model_copy(update={"batch_size": 7})),
        impute_counts(untrained, counts, FILL_ALL.model_copy(update={"batch_size": 256})),
        atol=1e-5,
    )


def test_fill_only_zeros_keeps_observed_nonzeros(untrained, counts):
    observed = lognorm(counts, size_factors(counts)).toarray()
    full = impute_counts(untrained, counts, FILL_ALL)
    kept = impute_counts(untrained, counts, KEEP)
    nonzero = observed > 0
    np.testing.assert_allclose(kept[nonzero], observed[nonzero], rtol=1e-6)
    np.testing.assert_array_equal(kept[~nonzero], full[~nonzero])
    assert not np.allclose(full[nonzero], observed[nonzero])


def test_the_default_scale_rescales_each_filled_cell_to_a_composition(untrained, counts):
    from scgapfill.data.normalization import as_composition

    composed = impute_counts(untrained, counts, KEEP.model_copy(update={"scale": "composition"}))
    np.testing.assert_array_equal(composed, as_composition(impute_counts(untrained, counts, KEEP)))
    np.testing.assert_allclose(np.expm1(composed.astype(np.float64)).sum(axis=1), 1e4, rtol=1e-4)
    assert ImputeParams().scale == "composition"


def test_missing_genes_are_zero_input_and_get_filled(untrained, counts):
    names = list(untrained.gene_names)
    dropped = names[:5]
    aligned, report = align_genes(counts[:, 5:], names[5:], untrained.gene_names)
    assert report["missing_genes"] == dropped
    assert aligned[:, :5].nnz == 0
    out = impute_counts(untrained, aligned, KEEP)
    assert np.isfinite(out[:, :5]).all() and (out[:, :5] > 0).all()


def test_gene_count_mismatch_raises(untrained, counts):
    with pytest.raises(ValueError, match="align_genes"):
        impute_counts(untrained, counts[:, :10])


def test_output_smoothing_averages_each_cells_levels_with_its_neighbours(untrained, counts):
    from scgapfill.graph.cellgraph import neighbour_graph

    weight = 0.4
    smoothed = FILL_ALL.model_copy(update={"output_smoothing": weight, "smoothing_neighbours": "input"})
    alone = FILL_ALL.model_copy(update={"output_smoothing": 0.0})
    own = np.expm1(impute_counts(untrained, counts, alone).astype(np.float64))  # levels, counts per 1e4
    params = untrained.model_params
    graph = neighbour_graph(lognorm(counts, size_factors(counts)), params.context_k, params.context_n_pcs,
                            untrained.train_params.seed)
    assert graph.diagonal().sum() == 0  # a cell's own estimate is not counted as a neighbour's
    expected = np.log1p((1 - weight) * own + weight * (graph @ own))
    np.testing.assert_allclose(impute_counts(untrained, counts, smoothed), expected, rtol=1e-4, atol=1e-5)
    # observed counts are still kept as they are, only the zeros change
    observed = lognorm(counts, size_factors(counts)).toarray()
    kept = impute_counts(untrained, counts, smoothed.model_copy(update={"fill_only_zeros": True}))
    nonzero = observed > 0
    np.testing.assert_allclose(kept[nonzero], observed[nonzero], rtol=1e-6)
    np.testing.assert_allclose(kept[~nonzero], expected[~nonzero], rtol=1e-4, atol=1e-5)
    alone_kept = impute_counts(untrained, counts, alone.model_copy(update={"fill_only_zeros": True}))
    assert not np.allclose(kept[~nonzero], alone_kept[~nonzero])


def test_smoothing_neighbours_found_again_on_the_estimates(untrained, counts):
    from scgapfill.graph.cellgraph import knn_graph, pca_embedding

    params = untrained.model_params
    alone = FILL_ALL.model_copy(update={"output_smoothing": 0.0})
    on_input = FILL_ALL.model_copy(update={"output_smoothing": 0.5, "smoothing_neighbours": "input"})
    on_imputed = FILL_ALL.model_copy(update={"output_smoothing": 0.5, "smoothing_neighbours": "imputed"})
    values = lognorm(counts, size_factors(counts))
    own = impute_counts(untrained, counts, KEEP.model_copy(update={"output_smoothing": 0.0}))  # observed kept
    _, pca = pca_embedding(values, params.context_n_pcs, untrained.train_params.seed)
    graph = knn_graph(pca.transform(own), params.context_k)  # in the input's principal components
    levels = np.expm1(impute_counts(untrained, counts, alone).astype(np.float64))
    expected = np.log1p(0.5 * levels + 0.5 * (graph @ levels))
    np.testing.assert_allclose(impute_counts(untrained, counts, on_imputed), expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(impute_counts(untrained, counts, on_input), expected, rtol=1e-4, atol=1e-5)


def test_output_smoothing_is_a_weight_between_0_and_1():
    from scgapfill.params import parse

    with pytest.raises(ValueError, match="output_smoothing"):
        parse("impute", {"output_smoothing": 1.5})
    with pytest.raises(ValueError, match="smoothing_neighbours"):
        parse("impute", {"smoothing_neighbours": "cells"})
    with pytest.raises(ValueError, match="model.output_smoothing"):
        parse("model", {"output_smoothing": 0.5})  # an imputation setting, no longer the network's


def test_bundles_saved_before_the_impute_section_load_with_their_settings(untrained):
    payload = untrained.to_dict()
    del payload["impute_params"]
    payload["model_params"].update({"output_smoothing": 0.25, "smoothing_neighbours": "input", "uri": "x.pt"})
    old = GapFillBundle.from_dict(payload)
    assert old.impute == ImputeParams(output_smoothing=0.25, smoothing_neighbours="input", scale="observed_library",
                                      form="level", unmodelled_k=15, unmodelled_steps=1)
    assert old.model == untrained.model
    # older still: no smoothing option at all, i.e. none was applied
    for key in ("output_smoothing", "smoothing_neighbours"):
        del payload["model_params"][key]
    assert GapFillBundle.from_dict(payload).impute.output_smoothing == 0.0


# --- many of the model's genes missing: a WARNING, and the share recorded ----------------------


def _without_first_genes(counts, n_missing):
    """The conftest counts (columns gene000, gene001, ...) without their first ``n_missing`` genes, as an
    AnnData with raw counts in layers['counts'], and the names of the genes left out."""
    import anndata as ad
    import pandas as pd

    names = [f"gene{i:03d}" for i in range(counts.shape[1])]  # conftest's gene_names(), which the layout holds
    kept = sp.csr_matrix(counts[:, n_missing:], dtype=np.float32)
    data = ad.AnnData(X=kept.copy(), obs=pd.DataFrame(index=[f"cell{i}" for i in range(kept.shape[0])]),
                      var=pd.DataFrame(index=names[n_missing:]), layers={"counts": kept})
    return data, set(names[:n_missing])


@pytest.mark.parametrize(("n_missing", "warned"), [(32, True), (4, False)])
def test_many_missing_genes_warn_and_the_share_is_recorded(untrained, counts, caplog, n_missing, warned):
    import logging

    from scgapfill.infer.imputation import MISSING_GENE_WARNING
    from scgapfill.model import GapFill

    genes = list(untrained.gene_names)
    data, left_out = _without_first_genes(counts, n_missing)
    with caplog.at_level(logging.WARNING, logger="scgapfill.data.genes"):
        GapFill.from_bundle(untrained).impute(data)
    share = n_missing / len(genes)
    assert data.uns["gapfill"]["missing_gene_share"] == pytest.approx(share)
    assert (share > MISSING_GENE_WARNING) == warned
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned:
        assert len(warnings) == 1
        assert f"50% of the model's genes ({n_missing} of {len(genes)}) are not in the data" in warnings[0]
        assert repr([g for g in genes if g in left_out][:5]) in warnings[0]  # in the model's order
        assert "var_names" in warnings[0] and "Ensembl" in warnings[0]
    else:
        assert warnings == []


def test_the_inference_node_logs_the_missing_share_to_the_active_mlflow_run(untrained, counts, tmp_path, caplog,
                                                                            monkeypatch):
    import logging

    import mlflow

    from scgapfill.pipelines.inference.nodes import load_aligned_counts

    path = tmp_path / "new.h5ad"
    _without_first_genes(counts, len(untrained.gene_names) // 2)[0].write_h5ad(path)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with caplog.at_level(logging.WARNING), mlflow.start_run() as run:
            _, report = load_aligned_counts({"path": str(path)}, untrained, {"chunk_size": 32})
        logged = mlflow.MlflowClient().get_run(run.info.run_id).data.metrics
    finally:
        mlflow.set_tracking_uri(previous)
    assert report["missing_gene_share"] == 0.5
    assert logged["inference_missing_gene_share"] == 0.5
    assert "50% of the model's genes" in caplog.text


def test_align_genes_in_the_models_order_is_the_callers_matrix_unchanged():
    counts = sp.csr_matrix(np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]], dtype=np.float32))
    aligned, report = align_genes(counts, ["a", "b", "c"], ["a", "b", "c"])
    assert np.shares_memory(aligned.data, counts.data)  # no copy of a matrix that may be most of memory
    assert report["n_missing"] == 0 and report["n_extra"] == 0
    unsorted = sp.csr_matrix((np.array([1.0, 2.0]), np.array([2, 0]), np.array([0, 2, 2])), shape=(2, 3))
    before = unsorted.indices.copy()
    aligned, _ = align_genes(unsorted, ["a", "b", "c"], ["a", "b", "c"])
    assert aligned.has_sorted_indices and np.array_equal(unsorted.indices, before)
    np.testing.assert_array_equal(aligned.toarray(), unsorted.toarray())


def test_output_reordered_to_the_data_genes_in_place_block_by_block():
    from scgapfill.model._anndata import in_column_order

    rng = np.random.default_rng(0)
    out = rng.random((10, 4)).astype(np.float32)
    expected = out[:, [2, 0, 3, 1]].copy()
    reordered = in_column_order(out, np.array([2, 0, 3, 1]), block_rows=3)
    assert reordered is out
    np.testing.assert_array_equal(reordered, expected)
    assert in_column_order(out, np.arange(4)) is out


def test_clean_counts_are_read_in_place_and_give_the_numbers_of_a_copy(untrained, counts):
    from scgapfill.infer.imputation import _clean_csr

    clean = sp.csr_matrix(counts, dtype=np.float32)
    clean.eliminate_zeros()
    clean.sort_indices()
    assert _clean_csr(clean)
    # The same counts in forms that are copied first: dense, integer, and with a stored zero.
    stored_zero = clean.copy()
    stored_zero.data[0] = 0.0
    expected_zero = stored_zero.copy()
    expected_zero.eliminate_zeros()
    assert not any(_clean_csr(m) for m in (clean.toarray(), clean.astype(np.int64), stored_zero))
    before = clean.data.copy()
    from_clean = impute_counts(untrained, clean)
    np.testing.assert_array_equal(clean.data, before)  # the caller's matrix is read, never written
    np.testing.assert_array_equal(from_clean, impute_counts(untrained, clean.toarray()))
    np.testing.assert_array_equal(from_clean, impute_counts(untrained, clean.astype(np.int64)))
    np.testing.assert_array_equal(impute_counts(untrained, stored_zero), impute_counts(untrained, expected_zero))
