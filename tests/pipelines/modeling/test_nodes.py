"""The modeling nodes on a tiny simulation: the layout, the masked copy scored as before, the deliverable."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from scgapfill.data.layout import validate_layout
from scgapfill.infer.imputation import impute_counts
from scgapfill.params import ImputeParams, ParameterError
from scgapfill.pipelines.data_processing import nodes as processing
from scgapfill.pipelines.masking import nodes as masking
from scgapfill.pipelines.modeling import nodes

MODEL = {"depth": 2, "base_channels": 4, "context_k": 5, "context_n_pcs": 8}
TRAIN = {"max_epochs": 2, "patience": 2, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False}
IMPUTE = {"batch_size": 64, "form": "level"}  # the tests of observed counts kept; the default form: test_gapfill


@pytest.fixture(scope="module")
def stages() -> dict:
    import scgapfill

    raw = scgapfill.simulate(n_cells=120, n_genes=80, n_groups=3, seed=1)
    normalized = processing.normalize(processing.quality_control(raw, {"min_genes": 5, "min_cells": 3}), {})
    processed = processing.select_genes(normalized, {"n_top_genes": 50})
    mask = masking.make_heldout_mask(processed, {"fraction": 0.1, "seed": 0})
    masked = masking.mask_counts(processed, mask, {})
    mcv_train, _ = masking.split_molecules(masked, {"train_fraction": 0.9, "seed": 0}, {})
    layout = nodes.compute_gene_layout(masked, {}, MODEL)
    gapfill, summary = nodes.train_model(mcv_train, layout, MODEL, TRAIN, IMPUTE)
    return {"normalized": normalized, "processed": processed, "masked": masked, "mcv_train": mcv_train,
            "layout": layout, "gapfill": gapfill, "summary": summary}


@pytest.mark.parametrize(("depth", "strategy"), [(1, "given"), (2, "correlation"), (4, "random")])
def test_compute_gene_layout_follows_model_depth(stages, depth: int, strategy: str) -> None:
    masked = stages["masked"]
    lay = nodes.compute_gene_layout(masked, {"strategy": strategy, "seed": 0}, {"depth": depth})
    validate_layout(lay)
    assert lay["genes"] == list(masked.var_names)
    assert lay["strategy"] == strategy
    height, width = lay["shape"]
    assert height % 2**depth == 0 and width % 2**depth == 0
    assert height * width >= masked.n_vars


def test_compute_gene_layout_validates_parameters(stages) -> None:
    with pytest.raises(ParameterError, match=r"layout\.strategy"):
        nodes.compute_gene_layout(stages["masked"], {"strategy": "tsne"}, {"depth": 2})
    with pytest.raises(ParameterError, match=r"model\.depth"):
        nodes.compute_gene_layout(stages["masked"], {"strategy": "given"}, {"depth": 0})


def test_the_masked_copy_is_imputed_as_before(stages) -> None:
    # What the scores are computed from, against a direct call of the imputation on the masked counts
    # (what the node did before GapFill): the same numbers, bit for bit.
    bundle, masked, mcv_train = stages["gapfill"].bundle, stages["masked"], stages["mcv_train"]
    scored = nodes.impute_masked(stages["gapfill"], masked, IMPUTE)
    direct = impute_counts(bundle, masked.layers["counts"], ImputeParams(**IMPUTE))
    np.testing.assert_array_equal(scored.layers["imputed"], direct)
    assert list(scored.var_names) == list(masked.var_names) and "imputed" not in masked.layers
    denoised = nodes.denoise_mcv_train(stages["gapfill"], mcv_train, IMPUTE)
    np.testing.assert_array_equal(denoised.X, impute_counts(bundle, mcv_train.layers["counts"], ImputeParams(**IMPUTE)))
    assert stages["summary"]["epochs"] == TRAIN["max_epochs"]


def test_impute_settings_act_at_imputation(stages) -> None:
    masked = stages["masked"]
    smoothed = nodes.impute_masked(stages["gapfill"], masked, IMPUTE).layers["imputed"]
    alone = nodes.impute_masked(stages["gapfill"], masked, {**IMPUTE, "output_smoothing": 0.0})
    assert alone.uns["gapfill"]["output_smoothing"] == 0.0
    assert not np.array_equal(alone.layers["imputed"], smoothed)


def _deliverable(stages, final: dict | None = None, **impute) -> ad.AnnData:
    return nodes.impute_all(stages["gapfill"], stages["normalized"], {**IMPUTE, **impute}, final or {}, TRAIN, {}, {})


def test_the_deliverable_holds_every_qcd_cell_gene_and_count(stages) -> None:
    normalized, processed = stages["normalized"], stages["processed"]
    out = _deliverable(stages)
    assert normalized.n_vars > processed.n_vars, "the test needs genes the model does not model"
    assert list(out.obs_names) == list(normalized.obs_names)
    assert list(out.var_names) == list(normalized.var_names)
    assert (out.layers["counts"] != sp.csr_matrix(normalized.layers["counts"])).nnz == 0
    np.testing.assert_array_equal(out.obs["size_factor"], normalized.obs["size_factor"])
    np.testing.assert_allclose(out.X.toarray(), normalized.X.toarray(), rtol=1e-6, atol=1e-6)
    assert out.var["gapfill_modelled"].tolist() == [g in set(processed.var_names) for g in normalized.var_names]

    imputed = out.layers["imputed"]
    assert imputed.dtype == np.float32 and imputed.shape == out.shape and np.isfinite(imputed).all()
    # A composition: each cell sums to 1e4, and the modelled genes' observed counts keep their
    # proportions (one factor per cell, the mass the filling added taken from every observed gene alike).
    levels = np.expm1(imputed.astype(np.float64))
    np.testing.assert_allclose(levels.sum(axis=1), 1e4, rtol=1e-4)
    modelled = out.var["gapfill_modelled"].to_numpy()
    counts = out.layers["counts"].toarray()
    observed = (counts > 0) & modelled
    factor = np.where(observed, levels / np.where(observed, counts, 1.0), np.nan)
    per_cell = np.broadcast_to(np.nanmean(factor, axis=1, keepdims=True), factor.shape)
    np.testing.assert_allclose(factor[observed], per_cell[observed], rtol=1e-4)
    np.testing.assert_allclose(out.layers["imputed_counts"].sum(axis=1), out.obs["size_factor"], rtol=1e-4)
    # On the observed library's scale every observed entry of a modelled gene is X itself; the other
    # genes are each cell's X averaged with its 15 nearest cells' (impute.unmodelled: neighbours).
    kept = _deliverable(stages, scale="observed_library").layers["imputed"]
    rows, cols = np.nonzero(observed)
    np.testing.assert_array_equal(kept[rows, cols], np.asarray(out.X[rows, cols]).ravel())
    x = out.X.toarray()[:, ~modelled]
    fill = kept[:, ~modelled]
    assert (fill[x == 0] > 0).mean() > 0.5, "the unmodelled genes' zeros are filled from the neighbours"
    # an average of X, not a new level
    np.testing.assert_allclose(fill.mean(axis=0), x.mean(axis=0), rtol=0.25, atol=0.02)
    assert np.corrcoef(fill.ravel(), x.ravel())[0, 1] > 0.5
    zeros = counts == 0
    assert (imputed[:, modelled][zeros[:, modelled]] > 0).mean() > 0.5, "the modelled genes' zeros are filled"
    carried = _deliverable(stages, scale="observed_library", unmodelled="observed").layers["imputed"]
    np.testing.assert_array_equal(carried[:, ~modelled], x.astype(np.float32))
    assert out.uns["gapfill"]["n_genes_modelled"] == processed.n_vars and out.uns["gapfill"]["refit"] is False


def test_the_deliverable_rescales_the_model_to_the_cells_total(stages) -> None:
    out = _deliverable(stages, scale="observed_library")
    bundle, normalized = stages["gapfill"].bundle, stages["normalized"]
    genes = list(bundle.gene_names)
    counts = sp.csr_matrix(normalized[:, genes].layers["counts"])
    own = impute_counts(bundle, counts, ImputeParams(**{**IMPUTE, "fill_only_zeros": False, "scale": "observed_library"}))
    ratio = np.asarray(counts.sum(axis=1)).ravel() / normalized.obs["size_factor"].to_numpy()
    expected = np.log1p(np.expm1(own.astype(np.float64)) * ratio[:, None])
    columns = [list(normalized.var_names).index(g) for g in genes]
    zeros = counts.toarray() == 0
    np.testing.assert_allclose(out.layers["imputed"][:, columns][zeros], expected[zeros], rtol=1e-5, atol=1e-6)


def test_final_refit_trains_again_on_every_count(stages) -> None:
    before = _deliverable(stages)
    refit = _deliverable(stages, {"refit": True})
    assert refit.uns["gapfill"]["refit"] is True
    assert list(refit.var_names) == list(before.var_names)
    assert not np.array_equal(refit.layers["imputed"], before.layers["imputed"])


def test_spatial_spots_train_on_their_tissue_neighbours_and_the_deliverable_keeps_their_positions() -> None:
    # The training pipeline's path for spatial data: positions carried through QC, the held-out and MCV
    # copies, context_graph=spatial reads them, and the deliverable keeps obsm/uns["spatial"].
    import scgapfill

    raw = scgapfill.simulate(n_cells=120, n_genes=80, n_groups=3, seed=2)
    raw.obsm["spatial"] = np.column_stack([np.arange(raw.n_obs) % 12, np.arange(raw.n_obs) // 12]).astype(float)
    raw.obs["library_id"] = np.where(np.arange(raw.n_obs) < 60, "s1", "s2")
    raw.uns["spatial"] = {lib: {"scalefactors": {"tissue_hires_scalef": 1.0, "spot_diameter_fullres": 1.0}}
                          for lib in ("s1", "s2")}
    normalized = processing.normalize(processing.quality_control(raw, {"min_genes": 5, "min_cells": 3}), {})
    processed = processing.select_genes(normalized, {"n_top_genes": 50})
    masked = masking.mask_counts(processed, masking.make_heldout_mask(processed, {"fraction": 0.1, "seed": 0}), {})
    mcv_train, _ = masking.split_molecules(masked, {"train_fraction": 0.9, "seed": 0}, {})
    assert "spatial" in mcv_train.obsm and "spatial" in masked.uns
    model = {**MODEL, "context_graph": "spatial"}
    layout = nodes.compute_gene_layout(masked, {}, model)
    gapfill, _ = nodes.train_model(mcv_train, layout, model, {**TRAIN, "max_epochs": 1}, IMPUTE)
    assert gapfill.bundle.model.context_graph == "spatial"
    nodes.impute_masked(gapfill, masked, IMPUTE)
    out = nodes.impute_all(gapfill, normalized, IMPUTE, {}, TRAIN, {}, {})
    np.testing.assert_array_equal(out.obsm["spatial"], normalized.obsm["spatial"])
    assert set(out.uns["spatial"]) == {"s1", "s2"} and list(out.obs_names) == list(normalized.obs_names)
    # Without positions the same model says how to give them.
    del masked.obsm["spatial"]
    with pytest.raises(ValueError, match=r"obsm\['spatial'\]"):
        nodes.impute_masked(gapfill, masked, IMPUTE)
