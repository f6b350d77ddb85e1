"""The OpenProblems denoising protocol and the downsampling truth (scgapfill.eval.denoising)."""

import numpy as np
import pytest
import scipy.sparse as sp

from scgapfill.eval.baselines import run_baseline
from scgapfill.eval.denoising import (
    denoising_scores,
    per_gene_pearson,
    run_protocol,
    split_downsampled,
    split_molecules,
)
from scgapfill.data.normalization import expected_lognorm
from scgapfill.data.simulate import simulate


@pytest.fixture(scope="module")
def simulation():
    # No dropout and no per-cell gamma noise: the true means are then the very rates the observed counts
    # were drawn at, what a perfect denoiser knows.
    adata = simulate(n_cells=300, n_genes=200, n_groups=3, seed=0, lib_loc=7.0, dropout_mid=-100.0, bcv=0.0,
                     de_prob=0.5)
    counts = sp.csr_matrix(adata.X)
    keep = np.asarray(counts.sum(axis=1)).ravel() > 0
    return counts[keep], np.asarray(adata.layers["true_mean"])[keep]


def _true_rates(true_mean):
    return lambda train, genes, seed: np.log1p(1e4 * true_mean / true_mean.sum(axis=1, keepdims=True))


def _true_expected_lognorm(true_mean):
    """The true rates as the log-normalised value a draw at the cell's depth takes on average."""
    def run(train, genes, seed):
        depth = np.asarray(train.sum(axis=1), dtype=np.float64)
        return expected_lognorm(true_mean / true_mean.sum(axis=1, keepdims=True) * depth, depth)
    return run


def test_splits_partition_every_molecule_and_are_seeded(simulation):
    counts, _ = simulation
    for split in (split_molecules(counts, seed=3), split_downsampled(counts, seed=3)):
        assert np.array_equal((split.train + split.test).toarray(), counts.toarray())
        again = (split_molecules if split.kind == "molecules" else split_downsampled)(counts, seed=3)
        assert np.array_equal(again.train.toarray(), split.train.toarray())
    share = split_molecules(counts, seed=0).train.sum() / counts.sum()
    given = split_downsampled(counts, seed=0).train.sum() / counts.sum()
    assert share == pytest.approx(0.9, abs=0.01) and given == pytest.approx(0.2, abs=0.01)


def test_a_perfect_denoiser_beats_no_denoising_on_both_scores_of_both_splits(simulation):
    counts, true_mean = simulation
    rows = run_protocol(counts, [f"g{i}" for i in range(counts.shape[1])],
                        {"none": lambda train, genes, seed: run_baseline("none", train),
                         "rates": _true_rates(true_mean), "expected": _true_expected_lognorm(true_mean)}, seeds=[0])
    by = {(r["split"], r["method"]): r for r in rows}
    for split in ("molecules", "downsampled"):
        for perfect in ("rates", "expected"):
            assert by[split, perfect]["poisson"] < by[split, "none"]["poisson"]
        assert by[split, "expected"]["mse"] < by[split, "none"]["mse"]
        assert by[split, "expected"]["mse_removed"] > 0 and by[split, "none"]["mse_removed"] == 0
    # Against the deep four fifths the rates themselves win the MSE too; against a tenth of the
    # molecules only their expected log does (a tenth's log-normalised draws sit far below the log of
    # their rate: docs/evaluation.md).
    assert by["downsampled", "rates"]["mse"] < by["downsampled", "none"]["mse"]
    for perfect in ("rates", "expected"):
        assert by["downsampled", perfect]["gene_pearson"] > by["downsampled", "none"]["gene_pearson"]
        assert by["downsampled", perfect]["ari"] >= by["downsampled", "none"]["ari"]


def test_the_scores_are_openproblems_formulas_with_the_model_first():
    train = sp.csr_matrix(np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 2.0]]))
    test = sp.csr_matrix(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
    denoised = np.log1p(np.array([[2.0, 1.0, 1.0], [1.0, 1.0, 2.0]]))
    profile = np.array([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]])
    test_lognorm = np.log1p(1e4 * test.toarray() / test.toarray().sum(axis=1, keepdims=True))
    mse = np.mean((test_lognorm - np.log1p(1e4 * profile)) ** 2)
    pred = profile * np.array([[4.0], [4.0]]) * (3.0 / 8.0)
    poisson = np.mean(pred - test.toarray() * np.log(pred + 1e-6))
    scores = denoising_scores(denoised, train, test)
    assert scores["mse"] == pytest.approx(mse) and scores["poisson"] == pytest.approx(poisson)
    # Only the composition is scored: a per-cell scale of the levels changes nothing.
    rescaled = np.log1p(np.expm1(denoised) * np.array([[3.0], [0.5]]))
    assert denoising_scores(rescaled, train, test) == pytest.approx(scores)


def test_the_deep_profile_correlates_with_the_truth_and_bad_input_is_named(simulation):
    counts, true_mean = simulation
    split = split_downsampled(counts, seed=0)
    truth = np.log1p(1e4 * true_mean / true_mean.sum(axis=1, keepdims=True))
    shuffled = np.random.default_rng(0).permutation(truth)
    assert per_gene_pearson(truth, split.test) > per_gene_pearson(shuffled, split.test) + 0.1
    with pytest.raises(ValueError, match="negative"):
        denoising_scores(-np.ones(counts.shape), split.train, split.test)
    with pytest.raises(ValueError, match="must match"):
        denoising_scores(truth[:, :5], split.train, split.test)


def test_knn_spatial_runs_in_the_protocol_on_the_spots_each_split_kept():
    from scgapfill.eval.benchmark import baseline_denoiser
    from scgapfill.eval.denoising import run_protocol
    from scgapfill.graph.spatial import SpotPositions

    rng = np.random.default_rng(0)
    side = 12
    y, x = np.divmod(np.arange(side * side), side)
    phases = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    rates = 2.0 * np.exp(1.5 * np.sin(x[:, None] / 3.0 + phases))  # each gene its own smooth wave over the grid
    counts = rng.poisson(rates).astype(float)
    counts[5] = 0  # a spot no split keeps: the positions must follow the kept spots
    positions = SpotPositions(np.column_stack([x, y]).astype(float))
    methods = {"none": baseline_denoiser("none", {}),
               "knn_spatial": baseline_denoiser("knn_spatial", {}, positions)}
    rows = run_protocol(sp.csr_matrix(counts), [f"g{j}" for j in range(20)], methods, [0], ("molecules",))
    spatial = next(r for r in rows if r["method"] == "knn_spatial")
    # Misaligned positions (the dropped spot not followed) would average unrelated spots and add error.
    assert spatial["n_cells"] == side * side - 1 and spatial["mse_removed"] > 0.05
