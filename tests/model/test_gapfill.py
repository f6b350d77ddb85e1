"""``GapFill``: AnnData in, the imputed layer out; save/load; fine-tuning; the one-call ``scgapfill.impute``."""

from __future__ import annotations

import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import scgapfill
from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.infer.imputation import impute_counts
from scgapfill.model import GapFill
from scgapfill.params import ImputeParams



def gene_names(n_genes: int = 64) -> list[str]:
    return [f"gene{i:03d}" for i in range(n_genes)]


def _adata(counts: sp.csr_matrix, genes: list[str]) -> ad.AnnData:
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(counts.shape[0])])
    return ad.AnnData(X=lognorm(counts, size_factors(counts)).astype(np.float32), obs=obs,
                      var=pd.DataFrame(index=genes), layers={"counts": sp.csr_matrix(counts, dtype=np.float32)})


@pytest.fixture(scope="module")
def adata(counts) -> ad.AnnData:
    return _adata(counts, gene_names())


@pytest.fixture(scope="module")
def fitted(adata, model_params, train_params) -> GapFill:
    return GapFill(model=model_params, train=train_params).fit(adata)


def test_fit_lays_out_the_genes_and_trains(fitted, adata, train_params):
    assert fitted.is_fitted
    assert sorted(fitted.bundle.layout["genes"]) == sorted(adata.var_names)
    assert fitted.bundle.layout["strategy"] == "correlation"
    assert fitted.history["epoch"].tolist() == list(range(train_params.max_epochs))
    assert fitted.bundle.impute == fitted.impute_params  # saved with the weights


def test_impute_adds_the_layer_and_its_record(fitted, adata, counts):
    target = adata.copy()
    assert fitted.impute(target) is None
    # The model's genes are the data's: the layer is the imputation itself, value for value.
    order = [fitted.gene_names.index(g) for g in adata.var_names]
    aligned = counts[:, [list(adata.var_names).index(g) for g in fitted.gene_names]]
    expected = impute_counts(fitted.bundle, aligned, fitted.impute_params)[:, order]
    np.testing.assert_array_equal(target.layers["imputed"], expected)
    assert target.layers["imputed"].dtype == np.float32
    assert target.var["gapfill_modelled"].all()
    record = target.uns["gapfill"]
    assert record["method"] == "scgapfill-unet" and record["fill_only_zeros"] is True
    assert record["unmodelled"] == "neighbours"
    assert record["output_smoothing"] == 0.5 and record["missing_gene_share"] == 0.0
    assert record["n_genes_modelled"] == counts.shape[1]


def test_imputing_the_cells_it_was_fitted_on_takes_the_training_graph(fitted, adata, counts, monkeypatch, tmp_path):
    from dataclasses import replace

    from scgapfill.graph import cellgraph

    graph = fitted.bundle.cell_graph
    assert graph is not None and graph.graph.shape == (adata.n_obs, adata.n_obs)
    aligned = sp.csr_matrix(counts[:, [list(adata.var_names).index(g) for g in fitted.gene_names]])
    rebuilt = impute_counts(replace(fitted.bundle, cell_graph=None), aligned, fitted.impute_params)
    searches = []
    search = cellgraph.pca_embedding
    monkeypatch.setattr(cellgraph, "pca_embedding", lambda *a, **k: searches.append(1) or search(*a, **k))
    # The same cells: the graph is taken, and the numbers are those of the graph built again.
    np.testing.assert_array_equal(impute_counts(fitted.bundle, aligned, fitted.impute_params), rebuilt)
    assert searches == []
    # One count more in one cell: other data, so its own graph is built.
    other = aligned.copy()
    other.data[0] += 1
    impute_counts(fitted.bundle, other, fitted.impute_params)
    assert searches == [1]
    # The graph lives with the fitted object only: never saved with the weights.
    assert GapFill.load(fitted.save(tmp_path)).bundle.cell_graph is None


def test_impute_not_in_place_leaves_the_input_alone(fitted, adata):
    before = adata.copy()
    out = fitted.impute(adata, key_added="filled", inplace=False)
    assert "filled" in out.layers and "filled" not in adata.layers and "gapfill" not in adata.uns
    assert (adata.layers["counts"] != before.layers["counts"]).nnz == 0


def _misaligned(counts):
    """The model's genes with four missing and the rest shuffled, plus three genes it does not know."""
    genes = gene_names()
    rng = np.random.default_rng(5)
    kept = list(rng.permutation(len(genes))[4:])
    extra = sp.csr_matrix(rng.poisson(2.0, size=(counts.shape[0], 3)).astype(np.float64))
    matrix = sp.hstack([counts[:, kept], extra]).tocsr()
    return matrix, _adata(matrix, [genes[i] for i in kept] + ["X1", "X2", "X3"]), len(kept)


def test_genes_aligned_by_name_extra_genes_carried_missing_reported(fitted, counts):
    matrix, data, n_kept = _misaligned(counts)
    GapFill.from_bundle(fitted.bundle, impute={"form": "level", "scale": "observed_library", "unmodelled": "observed"}).impute(data)
    layer = data.layers["imputed"]
    assert layer.shape == data.shape
    assert data.var["gapfill_modelled"].tolist() == [True] * n_kept + [False] * 3
    assert data.uns["gapfill"]["missing_gene_share"] == pytest.approx(4 / len(gene_names()))
    # Every observed count is kept, on the all-genes scale of X; the extra genes are as observed.
    observed = lognorm(matrix, size_factors(matrix)).astype(np.float32)
    rows, cols = observed.nonzero()
    np.testing.assert_array_equal(layer[rows, cols], np.asarray(observed[rows, cols]).ravel())
    np.testing.assert_array_equal(layer[:, -3:], observed[:, -3:].toarray())
    assert (layer[:, :n_kept][matrix[:, :n_kept].toarray() == 0] > 0).any()  # zeros filled


def test_the_default_layer_is_a_composition_and_the_level_form_keeps_the_observed_shares(fitted, counts):
    matrix, data, n_kept = _misaligned(counts)
    fitted.impute(data)
    assert data.uns["gapfill"]["scale"] == "composition"
    levels = np.expm1(data.layers["imputed"].astype(np.float64))
    np.testing.assert_allclose(levels.sum(axis=1), 1e4, rtol=1e-4)  # every cell, missing genes and all
    # The counts layer: the same profile at the cell's observed depth; the counts themselves untouched.
    dense = matrix.toarray()
    np.testing.assert_allclose(data.layers["imputed_counts"].sum(axis=1), dense.sum(axis=1), rtol=1e-4)
    assert (data.layers["counts"] != matrix).nnz == 0
    # With impute.form level the modelled genes' observed counts keep their proportions to each other:
    # one factor per cell (the genes the model does not know are their neighbours' average).
    GapFill.from_bundle(fitted.bundle, impute={"form": "level"}).impute(data)
    levels = np.expm1(data.layers["imputed"].astype(np.float64))
    np.testing.assert_allclose(levels.sum(axis=1), 1e4, rtol=1e-4)
    observed = dense > 0
    observed[:, n_kept:] = False
    factor = np.where(observed, levels / np.where(observed, dense, 1.0), np.nan)
    per_cell = np.broadcast_to(np.nanmean(factor, axis=1, keepdims=True), factor.shape)
    np.testing.assert_allclose(factor[observed], per_cell[observed], rtol=1e-4)


def test_save_and_load_give_the_same_imputation(fitted, adata, tmp_path):
    expected = fitted.impute(adata, inplace=False).layers["imputed"]
    folder = fitted.save(tmp_path / "model")
    assert folder.name == "gapfill_model.pt"
    for source in (tmp_path / "model", folder):
        loaded = GapFill.load(source)
        assert loaded.model_params == fitted.model_params and loaded.impute_params == fitted.impute_params
        np.testing.assert_array_equal(loaded.impute(adata, inplace=False).layers["imputed"], expected)
    other = GapFill.load(folder, impute={"output_smoothing": 0.0})
    assert not np.array_equal(other.impute(adata, inplace=False).layers["imputed"], expected)


def test_an_empty_inference_uri_names_the_parameter_and_an_example():
    from scgapfill.pipelines.inference.nodes import load_model

    with pytest.raises(ValueError, match=r"^inference.uri='' is empty; .*--params=\"inference.uri=models:/"):
        load_model({"uri": ""}, {})


def test_fit_on_a_fitted_model_continues_from_its_weights(fitted, adata, train_params, tmp_path):
    fitted.save(tmp_path / "m")
    # A learning rate too small to move them: the weights are where the first fit left them.
    tuned = GapFill.load(tmp_path / "m", train={**train_params.model_dump(), "lr": 1e-12, "max_epochs": 1})
    shuffled = adata[:, list(reversed(adata.var_names))].copy()  # genes matched by name, not position
    tuned.fit(shuffled)
    assert tuned.bundle.layout == fitted.bundle.layout and tuned.bundle.scaler == fitted.bundle.scaler
    for key, value in fitted.bundle.state_dict.items():
        torch.testing.assert_close(tuned.bundle.state_dict[key], value, atol=1e-6, rtol=0)
    fresh = GapFill(model=fitted.model_params, train={**train_params.model_dump(), "lr": 1e-12, "max_epochs": 1})
    fresh.fit(adata, gene_layout=fitted.bundle.layout)
    assert any(not torch.allclose(fresh.bundle.state_dict[k], v) for k, v in fitted.bundle.state_dict.items())


def test_one_call_impute_fills_in_place(adata, model_params, train_params):
    data = adata.copy()
    out = scgapfill.impute(data, model=model_params, train={**train_params.model_dump(), "max_epochs": 1},
                           impute=ImputeParams(output_smoothing=0.0))
    assert out is None and data.layers["imputed"].shape == data.shape
    assert data.uns["gapfill"]["output_smoothing"] == 0.0


def test_a_spaced_layout_trains_on_the_larger_grid_and_imputes(adata, model_params, train_params):
    model = GapFill(model=model_params, train={**train_params.model_dump(), "max_epochs": 1},
                    layout={"spacing": 2.0}).fit(adata)
    assert model.bundle.layout["shape"] == [12, 12]  # 64 genes: 8x8 packed, 128 pixels' worth spaced
    data = adata.copy()
    model.impute(data)
    assert np.isfinite(data.layers["imputed"]).all()
    filled = np.expm1(data.layers["imputed"]).sum(axis=1)
    np.testing.assert_allclose(filled, 1e4, rtol=1e-4)


def test_importing_the_package_does_not_import_torch():
    code = "import sys, scgapfill; assert 'torch' not in sys.modules; print(scgapfill.GapFill.__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "GapFill"


def test_a_fit_in_molecule_mode_runs_end_to_end_on_a_simulation(model_params, train_params):
    simulated = scgapfill.simulate(n_cells=80, n_genes=48, n_groups=2, seed=5)
    params = {**train_params.model_dump(), "max_epochs": 2, "training_mask": {"mode": "molecules"}}
    model = GapFill(model=model_params, train=params).fit(simulated)
    assert model.train_params.training_mask.mode == "molecules"
    assert np.isfinite(model.history[["train_loss", "val_loss"]].to_numpy()).all()
    target = simulated.copy()
    model.impute(target)
    imputed = np.asarray(target.layers["imputed"])
    assert imputed.shape == simulated.shape and np.isfinite(imputed).all()
    # Imputation is the same as after any fit: observed entries stay nonzero, zeros of modelled genes are filled.
    observed = sp.csr_matrix(simulated.X).toarray() > 0
    modelled = np.asarray(target.var["gapfill_modelled"])
    assert (imputed[observed] > 0).all()
    assert (imputed[:, modelled][~observed[:, modelled]] > 0).mean() > 0.5
    # The molecule split changed what was trained: the entry masks give another validation curve.
    entries = GapFill(model=model_params, train={**params, "training_mask": {"mode": "uniform"}}).fit(simulated)
    assert not np.allclose(entries.history["val_loss"], model.history["val_loss"])


def test_expected_log_form_is_the_average_log_of_the_levels_at_the_cells_depth(fitted, counts):
    """``impute.form: expected_log``: every modelled entry, observed or not, is what a count drawn at the
    model's level averages after log-normalisation at the cell's total over every gene; the genes the model
    does not know are the logs of ``unmodelled_k`` neighbours averaged ``unmodelled_steps`` times."""
    from scgapfill.data.normalization import expected_lognorm

    matrix, data, n_kept = _misaligned(counts)
    params = {"scale": "observed_library", "fill_only_zeros": True}
    levels = GapFill.from_bundle(fitted.bundle, impute={**params, "form": "level", "fill_only_zeros": False,
                                                        "unmodelled": "observed"}).impute(data, inplace=False)
    expected = GapFill.from_bundle(fitted.bundle, impute={**params, "form": "expected_log",
                                                          "unmodelled_k": 5}).impute(data, inplace=False)
    sf = size_factors(matrix)
    sf_modelled = np.asarray(matrix[:, :n_kept].sum(axis=1)).ravel()
    # The levels, per 1e4 of the cell's total over every gene, back to counts at that total.
    mean = np.expm1(levels.layers["imputed"][:, :n_kept].astype(np.float64)) * sf[:, None] / 1e4
    want = expected_lognorm(mean, sf[:, None])
    np.testing.assert_allclose(expected.layers["imputed"][:, :n_kept], want, rtol=1e-4, atol=1e-5)
    # Below the log of the level everywhere (Jensen); the observed counts are estimated too, not kept.
    assert (want <= np.log1p(mean / sf[:, None] * 1e4) + 1e-6).all()
    observed = lognorm(matrix[:, :n_kept], sf).toarray()
    seen = observed > 0
    assert not np.allclose(expected.layers["imputed"][:, :n_kept][seen], observed[seen], atol=1e-3)
    once = GapFill.from_bundle(fitted.bundle, impute={**params, "form": "expected_log", "unmodelled_k": 5,
                                                      "unmodelled_steps": 1}).impute(data, inplace=False)
    twice = GapFill.from_bundle(fitted.bundle, impute={**params, "form": "expected_log", "unmodelled_k": 5,
                                                       "unmodelled_steps": 2}).impute(data, inplace=False)
    extra_once, extra_twice = once.layers["imputed"][:, -3:], twice.layers["imputed"][:, -3:]
    # A second step averages the averages: every unknown gene's spread across cells shrinks.
    assert (extra_twice.std(axis=0) < extra_once.std(axis=0)).all()
    assert expected.uns["gapfill"]["form"] == "expected_log" and twice.uns["gapfill"]["unmodelled_steps"] == 2


def test_expected_log_form_on_the_models_own_genes(fitted, adata):
    """The same form when the data carry exactly the model's genes (the streamed inference's case)."""
    from scgapfill.data.normalization import expected_lognorm

    params = {"scale": "observed_library", "output_smoothing": 0.0}
    levels = GapFill.from_bundle(fitted.bundle, impute={**params, "form": "level",
                                                        "fill_only_zeros": False}).impute(adata, inplace=False)
    expected = GapFill.from_bundle(fitted.bundle, impute={**params, "form": "expected_log"}).impute(adata, inplace=False)
    sf = size_factors(adata.layers["counts"] if "counts" in adata.layers else adata.X)
    mean = np.expm1(levels.layers["imputed"].astype(np.float64)) * sf[:, None] / 1e4
    np.testing.assert_allclose(expected.layers["imputed"], expected_lognorm(mean, sf[:, None]), rtol=1e-4, atol=1e-5)
