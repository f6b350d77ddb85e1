import logging

import numpy as np
import pytest
import scipy.sparse as sp

from scgapfill.eval.metrics import (
    cluster_labels,
    clustering_scores,
    heldout_scores,
    mcv_scores,
    pearson,
    rmse,
    truth_scores,
)
from scgapfill.data.normalization import lognorm, size_factors

# ----------------------------------------------------------------------------- held-out


@pytest.fixture
def heldout_case():
    rng = np.random.default_rng(0)
    imputed = rng.gamma(2.0, 1.0, size=(20, 15))
    rows = np.repeat(np.arange(20), 5)
    cols = np.concatenate([rng.choice(15, 5, replace=False) for _ in range(20)])
    return imputed, rows, cols


def test_heldout_perfect_imputer(heldout_case):
    imputed, rows, cols = heldout_case
    scores = heldout_scores(imputed, imputed[rows, cols], rows, cols)
    assert scores["heldout_rmse"] == 0.0
    assert scores["heldout_pearson"] == pytest.approx(1.0)
    assert scores["heldout_cell_pearson_median"] == pytest.approx(1.0)


def test_heldout_constant_offset(heldout_case):
    imputed, rows, cols = heldout_case
    scores = heldout_scores(imputed + 0.5, imputed[rows, cols], rows, cols)
    assert scores["heldout_rmse"] == pytest.approx(0.5)
    assert scores["heldout_pearson"] == pytest.approx(1.0)


def test_heldout_permuted_predictions_lower_pearson(heldout_case):
    imputed, rows, cols = heldout_case
    truth = imputed[rows, cols]
    shuffled = np.random.default_rng(1).permutation(truth.size)
    permuted = imputed.copy()
    permuted[rows, cols] = truth[shuffled]
    scores = heldout_scores(permuted, truth, rows, cols)
    assert scores["heldout_pearson"] < 0.5
    assert scores["heldout_rmse"] > 0.5
    assert scores["heldout_cell_pearson_median"] < 0.5


def test_heldout_returning_the_input_scores_the_none_value_by_hand():
    # True counts; entries (0, 1) and (1, 0) are held out (set to 0 in what the method sees).
    masked = sp.csr_matrix(np.array([[1.0, 0.0, 3.0], [0.0, 2.0, 2.0]]))
    rows, cols = np.array([0, 1]), np.array([1, 0])
    sf = size_factors(masked)  # [4, 4]: the masked totals, not the true ones
    truth_values = np.log1p(np.array([3.0, 6.0]) / 4.0 * 1e4)  # true counts 3 and 6
    returned_input = lognorm(masked, sf).toarray()  # what "none" outputs: 0 at held-out entries
    scores = heldout_scores(returned_input, truth_values, rows, cols)
    expected_rmse = np.sqrt((np.log(7501.0) ** 2 + np.log(15001.0) ** 2) / 2)
    assert scores["heldout_rmse"] == pytest.approx(expected_rmse)
    # All predictions are 0: Pearson is undefined, reported as NaN rather than a number.
    assert np.isnan(scores["heldout_pearson"])


def test_heldout_cell_pearson_median_by_hand():
    imputed = np.zeros((4, 4))
    imputed[0, :3] = [1.0, 2.0, 3.0]  # true [1, 2, 4]
    imputed[1, :2] = [1.0, 5.0]  # only 2 entries: skipped
    imputed[2, :3] = [2.0, 2.0, 2.0]  # constant prediction: skipped
    imputed[3, :3] = [3.0, 2.0, 1.0]  # true [1, 2, 3]: r = -1
    rows = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3])
    cols = np.array([0, 1, 2, 0, 1, 0, 1, 2, 0, 1, 2])
    truth = np.array([1.0, 2.0, 4.0, 0.0, 9.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    # Shuffle the entry order: grouping must not depend on it.
    order = np.random.default_rng(0).permutation(rows.size)
    scores = heldout_scores(imputed, truth[order], rows[order], cols[order])
    r0 = np.corrcoef([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])[0, 1]
    assert scores["heldout_cell_pearson_median"] == pytest.approx((r0 - 1.0) / 2)


def test_heldout_gene_pearson_median_by_hand():
    rng = np.random.default_rng(1)
    n_cells = 40
    truth_by_gene = rng.gamma(2.0, 1.0, size=(n_cells, 3))
    imputed = np.zeros((n_cells, 3))
    imputed[:, 0] = truth_by_gene[:, 0] * 2 + 1  # r = 1 within the gene
    imputed[:, 1] = truth_by_gene[:, 1].mean()  # the gene's average: constant, skipped
    imputed[:, 2] = -truth_by_gene[:, 2]  # r = -1
    rows = np.tile(np.arange(n_cells), 3)
    cols = np.repeat(np.arange(3), n_cells)
    truth = truth_by_gene.T.ravel()
    assert heldout_scores(imputed, truth, rows, cols)["heldout_gene_pearson_median"] == pytest.approx(0.0)
    # A gene with fewer than MIN_HELDOUT_PER_GENE held-out entries is not counted.
    few = (cols != 2) | (rows < 5)
    assert heldout_scores(imputed, truth[few], rows[few], cols[few])["heldout_gene_pearson_median"] == pytest.approx(1.0)


def test_heldout_gene_pearson_given_depth_separates_depth_from_cell_signal():
    rng = np.random.default_rng(2)
    n_cells, n_genes = 300, 4
    library = rng.lognormal(7.5, 0.6, size=n_cells)
    signal = rng.normal(size=(n_cells, n_genes))
    # One count weighs more in a shallow cell: the true values fall with depth, plus the cells' own signal.
    truth_by_gene = -np.log(library)[:, None] + signal + 0.3 * rng.normal(size=(n_cells, n_genes))
    rows = np.tile(np.arange(n_cells), n_genes)
    cols = np.repeat(np.arange(n_genes), n_cells)
    truth = truth_by_gene.T.ravel()
    depth_only = np.repeat((1.0 / library)[:, None], n_genes, axis=1)  # knows the depth, nothing else
    both = -np.log(library)[:, None] + signal
    scores = {name: heldout_scores(imputed, truth, rows, cols, library)
              for name, imputed in (("depth", depth_only), ("signal", signal), ("both", both))}
    assert scores["depth"]["heldout_gene_pearson_median"] > 0.4
    assert abs(scores["depth"]["heldout_gene_pearson_given_depth"]) < 0.15
    assert scores["signal"]["heldout_gene_pearson_given_depth"] > 0.9
    assert scores["both"]["heldout_gene_pearson_given_depth"] == pytest.approx(
        scores["signal"]["heldout_gene_pearson_given_depth"], abs=0.02)
    assert "heldout_gene_pearson_given_depth" not in heldout_scores(signal, truth, rows, cols)
    with pytest.raises(ValueError, match="one total >= 0 per cell"):
        heldout_scores(signal, truth, rows, cols, library[:-1])


def test_heldout_validation(heldout_case):
    imputed, rows, cols = heldout_case
    truth = imputed[rows, cols]
    with pytest.raises(ValueError, match="one length"):
        heldout_scores(imputed, truth[:-1], rows, cols)
    with pytest.raises(ValueError, match="outside"):
        heldout_scores(imputed, truth, rows + 20, cols)
    with pytest.raises(ValueError, match="integer"):
        heldout_scores(imputed, truth, rows.astype(float), cols)
    with pytest.raises(ValueError, match="NaN"):
        heldout_scores(np.full_like(imputed, np.nan), truth, rows, cols)


def test_rmse_pearson_helpers():
    assert rmse([0.0, 0.0], [3.0, 4.0]) == pytest.approx(np.sqrt(12.5))
    assert pearson([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(1.0)
    assert np.isnan(pearson([1.0, 1.0], [1.0, 2.0]))


# ----------------------------------------------------------------------------- MCV

TRAIN = np.array([[2.0, 2.0], [1.0, 5.0]])  # size factors [4, 6]
TEST = np.array([[1.0, 1.0], [0.0, 0.0]])  # cell 1 has no test counts
DENOISED_COUNTS = np.array([[3.0, 1.0], [2.0, 2.0]])
DENOISED = np.log1p(DENOISED_COUNTS / np.array([[4.0], [6.0]]) * 1e4)  # a method's lognorm output


def test_mcv_by_hand():
    scores = mcv_scores(DENOISED, sp.csr_matrix(TRAIN), sp.csr_matrix(TEST))
    # MSE on cell 0 only: test -> [5000, 5000] per 1e4, denoised [3, 1] -> [7500, 2500].
    expected_mse = ((np.log(5001) - np.log(7501)) ** 2 + (np.log(5001) - np.log(2501)) ** 2) / 2
    assert scores["mcv_mse"] == pytest.approx(expected_mse)
    # Poisson: pred = denoised counts * 2 / 10 (test total / train total); y = test.
    pred = DENOISED_COUNTS * 0.2
    expected_poisson = np.mean(
        [pred[0, 0] - np.log(pred[0, 0] + 1e-6), pred[0, 1] - np.log(pred[0, 1] + 1e-6), pred[1, 0], pred[1, 1]]
    )
    assert scores["mcv_poisson"] == pytest.approx(expected_poisson)


def test_mcv_perfect_profile_scores_zero_mse():
    # A denoiser whose profile equals the test profile has MSE 0 whatever its scale.
    denoised = np.log1p(np.array([[5.0, 5.0], [1.0, 1.0]]) / np.array([[4.0], [6.0]]) * 1e4)
    assert mcv_scores(denoised, TRAIN, TEST)["mcv_mse"] == pytest.approx(0.0, abs=1e-12)


def test_mcv_validation():
    denoised = DENOISED
    with pytest.raises(ValueError, match="negative"):
        mcv_scores(-denoised, TRAIN, TEST)
    with pytest.raises(ValueError, match="shape"):
        mcv_scores(denoised[:, :1], TRAIN, TEST)
    with pytest.raises(ValueError, match="all zero"):
        mcv_scores(denoised, TRAIN, np.zeros_like(TEST))
    with pytest.raises(ValueError, match="no counts"):
        mcv_scores(denoised, np.array([[1.0, 1.0], [0.0, 0.0]]), TEST)


# ----------------------------------------------------------------------------- clustering


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    group_means = rng.gamma(2.0, 1.0, size=(3, 50)) * 3
    labels = np.repeat(["a", "b", "c"], 30)
    counts = rng.poisson(group_means[np.repeat(np.arange(3), 30)]).astype(float)
    counts[:, 0] += 1  # no empty cell
    return lognorm(counts, size_factors(counts)), labels


def test_clustering_recovers_three_blobs():
    values, labels = _blobs()
    noisy = values + np.random.default_rng(1).normal(0, 0.05, values.shape)
    scores, before, after = clustering_scores(values, noisy, labels, seed=0)
    assert scores["ari_before"] == 1.0
    assert scores["ari_after"] == 1.0
    assert scores["ari_before_after"] == 1.0
    assert scores["n_clusters_before"] == 3 and scores["n_clusters_after"] == 3
    assert before.shape == (90,) and before.dtype.kind == "U"
    # Deterministic for a fixed seed.
    np.testing.assert_array_equal(cluster_labels(values, 3, seed=0), before)


def test_cluster_labels_finds_the_target_number():
    values, _ = _blobs()
    assert np.unique(cluster_labels(sp.csr_matrix(values), 1, seed=0)).size == 1


def test_clustering_without_labels_warns(caplog):
    values, _ = _blobs()
    with caplog.at_level(logging.WARNING, logger="scgapfill.eval.metrics"):
        assert clustering_scores(values, values, None) is None
    assert "labels" in caplog.text


def test_clustering_validation():
    values, labels = _blobs()
    with pytest.raises(ValueError, match="one entry per cell"):
        clustering_scores(values, values, labels[:-1])
    with pytest.raises(ValueError, match="n_target"):
        cluster_labels(values, 0)


# ----------------------------------------------------------------------------- truth


def test_truth_scores_compare_compositions():
    truth_counts = np.array([[2.0, 2.0], [1.0, 3.0]])
    truth_mean = np.array([[1.5, 2.5], [2.0, 2.0]])
    perfect = np.log1p(truth_counts / truth_counts.sum(axis=1, keepdims=True) * 1e4)
    scores = truth_scores(perfect, truth_counts, truth_mean)
    assert scores["truth_rmse"] == 0.0
    assert scores["truth_pearson"] == pytest.approx(1.0)
    mean_ln = np.log1p(truth_mean / truth_mean.sum(axis=1, keepdims=True) * 1e4)
    assert scores["truth_mean_rmse"] == pytest.approx(np.sqrt(np.mean((perfect - mean_ln) ** 2)))
    assert truth_scores(mean_ln, truth_counts, truth_mean)["truth_mean_rmse"] == 0.0
    # The right shares on a cell scaled as if its library were half as deep: not a perfect score.
    mis_scaled = np.log1p(truth_counts / (truth_counts.sum(axis=1, keepdims=True) / 2) * 1e4)
    assert truth_scores(mis_scaled, truth_counts, truth_mean)["truth_rmse"] == pytest.approx(np.log(2), rel=1e-3)


def _independent_truth(seed=0):
    rng = np.random.default_rng(seed)
    truth_mean = rng.gamma(2.0, 2.0, size=(300, 40))
    truth_mean[:, 36:] *= rng.gamma(2.0, 0.5, size=(300, 1))  # a truly correlated module
    truth_mean[:, 5] = 3.0  # a constant gene: r is NaN in numpy, counted as 0 here
    truth_counts = rng.poisson(truth_mean).astype(float)
    truth_counts[:, 0] += 1
    return truth_counts, truth_mean, size_factors(truth_mean)  # the mean's composition: lognorm(mean, sf)


def test_false_corr_rate_zero_for_the_truth():
    truth_counts, truth_mean, sf = _independent_truth()
    perfect_mean = lognorm(truth_mean, sf)
    scores = truth_scores(perfect_mean, truth_counts, truth_mean)
    # Real correlations (the module) are not "false": only independent pairs count.
    assert np.corrcoef(perfect_mean[:, 36], perfect_mean[:, 37])[0, 1] > 0.4
    assert scores["false_corr_rate"] == 0.0
    assert scores["truth_mean_pearson"] == pytest.approx(1.0)


def test_false_corr_rate_high_for_a_shared_cell_factor():
    truth_counts, truth_mean, sf = _independent_truth()
    shared = np.random.default_rng(5).normal(0.0, 2.0, size=(300, 1))
    smeared = lognorm(truth_mean, sf) + shared
    assert truth_scores(smeared, truth_counts, truth_mean)["false_corr_rate"] > 0.9


def test_false_corr_rate_gene_subset_is_seeded():
    truth_counts, truth_mean, sf = _independent_truth()
    smeared = lognorm(truth_mean, sf) + np.random.default_rng(5).normal(0.0, 0.5, size=(300, 1))
    first = truth_scores(smeared, truth_counts, truth_mean, max_genes_corr=10, seed=3)
    again = truth_scores(smeared, truth_counts, truth_mean, max_genes_corr=10, seed=3)
    assert 0 < first["false_corr_rate"] < 1
    assert first["false_corr_rate"] == again["false_corr_rate"]


def test_truth_scores_validation():
    truth_counts, truth_mean, sf = _independent_truth()
    with pytest.raises(ValueError, match="shape"):
        truth_scores(np.zeros((300, 39)), truth_counts, truth_mean)
    with pytest.raises(ValueError, match="truth_mean"):
        truth_scores(np.zeros((300, 40)), truth_counts, truth_mean[:, :-1])


def test_clustering_scores_reuses_a_given_before_clustering():
    from scgapfill.eval import metrics

    rng = np.random.default_rng(7)
    labels = np.repeat(["a", "b", "c"], 30)
    means = np.repeat(rng.gamma(2.0, 2.0, size=(3, 50)) * rng.integers(1, 6, size=(3, 50)), 30, axis=0)
    values = np.log1p(rng.poisson(means).astype(float))
    full, before, after = metrics.clustering_scores(values, values, labels, seed=0)
    reused, _, _ = metrics.clustering_scores(None, values, labels, seed=0, clusters_before=before)
    assert reused == full
    wrong = np.where(before == before[-1], before[0], before)  # two clusters merged
    shifted, _, _ = metrics.clustering_scores(None, values, labels, seed=0, clusters_before=wrong)
    assert shifted["ari_before"] != full["ari_before"]
    with pytest.raises(ValueError, match="before_lognorm or clusters_before"):
        metrics.clustering_scores(None, values, labels)
    with pytest.raises(ValueError, match="clusters_before has shape"):
        metrics.clustering_scores(None, values, labels, clusters_before=before[:5])


def test_heldout_truth_mean_pearson_scores_only_the_heldout_entries():
    truth_counts, truth_mean, sf = _independent_truth()
    mean_ln = lognorm(truth_mean, sf)
    rows, cols = np.arange(0, 300, 3), np.arange(300) % 40
    rows, cols = np.repeat(rows, 2), cols[: rows.size * 2]
    assert "heldout_truth_mean_pearson" not in truth_scores(mean_ln, truth_counts, truth_mean)
    spoiled = mean_ln.copy()
    untouched = np.ones(spoiled.shape, dtype=bool)
    untouched[rows, cols] = False
    spoiled[untouched] = 0.0  # wrong everywhere except at the held-out entries
    scores = truth_scores(spoiled, truth_counts, truth_mean, heldout=(rows, cols))
    assert scores["heldout_truth_mean_pearson"] == pytest.approx(1.0)
    assert scores["truth_mean_pearson"] < 0.9
    noisy = mean_ln + np.random.default_rng(3).normal(0.0, 1.0, size=mean_ln.shape)
    assert truth_scores(noisy, truth_counts, truth_mean, heldout=(rows, cols))["heldout_truth_mean_pearson"] < 0.9


def test_heldout_gene_pearson_beyond_floor_scores_the_depth_floor_zero_and_keeps_cell_signal():
    from scgapfill.eval.baselines import run_baseline
    from scgapfill.eval.metrics import depth_floor

    rng = np.random.default_rng(3)
    n_cells, n_genes = 400, 200
    library = rng.lognormal(6.5, 0.6, size=n_cells)  # shallow: a held-out count's value is set mostly by depth
    kind = rng.integers(0, 2, size=n_cells)
    share = rng.gamma(1.0, 1.0, size=(2, n_genes))
    share /= share.sum(axis=1, keepdims=True)
    counts = sp.csr_matrix(rng.poisson(share[kind] * library[:, None]).astype(float))
    counts = counts[np.asarray(counts.sum(axis=1)).ravel() > 0]
    kind = kind[: counts.shape[0]]
    dense = counts.toarray()
    rows, cols = np.nonzero(dense)
    pick = rng.random(rows.size) < 0.2
    rows, cols = rows[pick], cols[pick]
    masked = dense.copy()
    masked[rows, cols] = 0
    masked_library = masked.sum(axis=1)
    truth = np.log1p(dense[rows, cols] / dense.sum(axis=1)[rows] * 1e4)
    floor = depth_floor(sp.csr_matrix(masked), rows, cols)
    gene_depth = run_baseline("gene_depth", sp.csr_matrix(masked))
    # An estimate of which cell expresses what: the cell's kind's share at its depth.
    informed = np.log1p(share[kind] * 1e4)
    scores = {name: heldout_scores(imputed, truth, rows, cols, masked_library, floor=floor)
              for name, imputed in (("gene_depth", gene_depth), ("informed", informed))}
    assert np.allclose(gene_depth[rows, cols], floor)
    assert scores["gene_depth"]["heldout_gene_pearson_beyond_floor"] == 0.0
    # The floor scores on the per-gene r, and partialling the log depth alone does not remove it.
    assert scores["gene_depth"]["heldout_gene_pearson_median"] > 0.15
    assert scores["gene_depth"]["heldout_gene_pearson_given_depth"] > 0.05
    assert scores["informed"]["heldout_gene_pearson_beyond_floor"] > 0.3
    with pytest.raises(ValueError, match="floor needs library"):
        heldout_scores(informed, truth, rows, cols, floor=floor)
