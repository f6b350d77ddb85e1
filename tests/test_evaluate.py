"""The evaluation protocol put together: truth normalisation, perfect and do-nothing imputers."""

import numpy as np
import pytest
import scipy.sparse as sp

from scgapfill import simulate
from scgapfill.data import masks
from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.data.preprocessing import normalize, quality_control, select_genes
from scgapfill.eval.evaluate import build_evaluation_data, score_method


@pytest.fixture(scope="module")
def setup():
    # Deep and strongly differential, so that clustering finds the groups on 80 genes.
    adata = simulate(n_cells=150, n_genes=80, n_groups=3, seed=2, lib_loc=8.0, de_prob=0.5, de_loc=1.0)
    adata = select_genes(normalize(quality_control(adata, {"min_genes": 5, "min_cells": 1}), {}), {})
    counts = sp.csr_matrix(adata.layers["counts"])
    mask = masks.heldout_mask(counts, 0.1, seed=0)
    masked = masks.apply_mask(counts, mask)
    train, test = masks.mcv_split(masked, 0.9, seed=0)
    return adata, counts, mask, masked, train, build_evaluation_data(adata, mask, train, test)


def test_heldout_truth_is_a_share_of_the_unmasked_library(setup):
    _, counts, mask, masked, _, data = setup
    sf = size_factors(counts)
    rows, cols = mask.nonzero()
    expected = np.log1p(np.asarray(counts[data.rows, data.cols]).ravel() / sf[data.rows] * 1e4)
    np.testing.assert_allclose(data.heldout_truth, expected)
    assert sorted(zip(rows, cols)) == sorted(zip(data.rows, data.cols))


def test_perfect_imputer_scores_zero_error_and_perfect_correlation(setup):
    _, counts, _, masked, train, data = setup
    perfect = lognorm(counts, size_factors(counts)).toarray()
    scores = score_method(data, perfect, None, {"plots": False}).metrics
    assert scores["heldout_rmse"] == pytest.approx(0, abs=1e-9)
    assert scores["heldout_pearson"] == pytest.approx(1)
    # The true counts filled in without renormalising the cell: too much mass, not perfect.
    unrenormalised = lognorm(counts, size_factors(masked)).toarray()
    assert score_method(data, unrenormalised, None, {"plots": False}).metrics["heldout_rmse"] > 0.05
    assert 0 < scores["ari_before"] <= 1  # labels known: clustering scored
    assert "truth_rmse" in scores and "false_corr_rate" in scores


def test_doing_nothing_scores_the_rms_of_the_heldout_truth(setup):
    _, _, _, masked, train, data = setup
    none = lognorm(masked, size_factors(masked)).toarray()
    scores = score_method(data, none, lognorm(train, size_factors(train)).toarray()).metrics
    assert scores["heldout_rmse"] == pytest.approx(np.sqrt(np.mean(data.heldout_truth**2)))
    assert scores["ari_after"] == pytest.approx(scores["ari_before"])
    assert scores["ari_before_after"] == pytest.approx(1.0)
    assert np.isfinite(scores["mcv_mse"]) and np.isfinite(scores["mcv_poisson"])


def test_per_cell_table_counts_filled_entries(setup):
    _, _, _, masked, _, data = setup
    none = lognorm(masked, size_factors(masked)).toarray()
    filled = none.copy()
    filled[none == 0] = 1.0
    table_none = score_method(data, none, None).per_cell
    table_filled = score_method(data, filled, None).per_cell
    assert list(table_none.columns[:4]) == ["cell_id", "label", "cluster_before", "cluster_after"]
    assert (table_none["n_filled"] == 0).all()
    np.testing.assert_array_equal(table_filled["n_filled"], table_filled["n_zeros_in_input"])
    assert table_none["n_heldout"].sum() == data.rows.size


def test_wrong_shape_is_refused(setup):
    data = setup[-1]
    with pytest.raises(ValueError, match="imputed matrix"):
        score_method(data, np.zeros((3, 3)), None)


def test_plots_off_still_draws_the_heldout_scatter_the_catalog_logs(setup):
    # The catalog logs the plots folder to MLflow; an empty dict left no folder and failed the run's
    # last save (evaluation.plots=false at 20k cells). Off only skips the costly UMAPs.
    from scgapfill.params import EvaluationParams
    from scgapfill.pipelines.evaluation.nodes import make_figures

    _, counts, _, _, _, data = setup
    imputed = lognorm(counts, size_factors(counts)).toarray()
    assert set(make_figures(data, imputed, None, EvaluationParams(plots=False))) == {"heldout_scatter.png"}
    assert set(make_figures(data, imputed, None, EvaluationParams(plots=True))) == {
        "heldout_scatter.png", "umap_before_after.png"}



def test_spots_with_a_tissue_image_add_the_spatial_figure(setup):
    import anndata as ad

    from scgapfill.params import EvaluationParams
    from scgapfill.pipelines.evaluation.nodes import make_figures

    _, counts, _, _, _, data = setup
    imputed = lognorm(counts, size_factors(counts)).toarray()
    spots = ad.AnnData(sp.csr_matrix(imputed), layers={"imputed": imputed + 0.1})
    assert set(make_figures(data, imputed, None, EvaluationParams(plots=False), spots)) == {"heldout_scatter.png"}
    side = int(np.ceil(np.sqrt(spots.n_obs)))
    spots.obsm["spatial"] = np.column_stack(np.divmod(np.arange(spots.n_obs), side)).astype(float)
    spots.uns["spatial"] = {"s1": {"images": {"hires": np.ones((side, side, 3))},
                                   "scalefactors": {"tissue_hires_scalef": 1.0}}}
    assert set(make_figures(data, imputed, None, EvaluationParams(plots=False), spots)) == {
        "heldout_scatter.png", "spatial_before_after.png"}


def test_metrics_json_holds_null_not_nan():
    import json

    from scgapfill.pipelines.evaluation.nodes import _strict_json

    text = json.dumps(_strict_json({"heldout_pearson": float("nan"), "heldout_rmse": 1.5}), allow_nan=False)
    assert json.loads(text) == {"heldout_pearson": None, "heldout_rmse": 1.5}
