"""The benchmark: every method x data set x seed, summarised, one MLflow run per method and data set."""

import mlflow
import pytest

from scgapfill.eval.benchmark import log_runs_to_mlflow, run_benchmark, summarise

TINY = {
    # Sparse like real data (~400 counts per cell over 150 genes), so true zeros abound.
    "input": {"simulation": {"n_cells": 120, "n_genes": 150, "n_groups": 3, "seed": 1, "lib_loc": 6.0}},
    "qc": {"min_genes": 5, "min_cells": 1},
    "benchmark": {"datasets": ["simulated"], "methods": ["none", "gene_mean", "knn"], "n_seeds": 2},
    "evaluation": {"plots": False},
}


@pytest.fixture(scope="module")
def runs():
    return run_benchmark(TINY)


def test_one_row_per_dataset_method_seed(runs):
    assert len(runs) == 3 * 2
    assert set(runs["method"]) == {"none", "gene_mean", "knn"}
    assert sorted(runs["seed"].unique()) == [0, 1]
    assert {"heldout_rmse", "mcv_mse", "ari_after", "truth_rmse", "false_corr_rate", "seconds"} <= set(runs.columns)


def test_seeds_give_different_masks_and_same_seed_same_numbers(runs):
    none = runs[runs["method"] == "none"]
    assert none["heldout_rmse"].nunique() == 2
    again = run_benchmark({**TINY, "benchmark": {**TINY["benchmark"], "methods": ["none"], "n_seeds": 1}})
    assert again["heldout_rmse"].iloc[0] == pytest.approx(none[none["seed"] == 0]["heldout_rmse"].iloc[0])


def test_the_trivial_filler_wins_heldout_but_loses_truth(runs):
    # The protocol's cautionary tale, reproduced on a simulation.
    mean = runs.groupby("method")[["heldout_rmse", "truth_rmse"]].mean()
    assert mean.loc["gene_mean", "heldout_rmse"] < mean.loc["none", "heldout_rmse"]
    assert mean.loc["knn", "truth_rmse"] < mean.loc["gene_mean", "truth_rmse"]


def test_summary_is_mean_and_sd_over_seeds(runs):
    table, markdown = summarise(runs)
    row = table[table["method"] == "knn"].iloc[0]
    values = runs[runs["method"] == "knn"]["heldout_pearson"]
    assert row["heldout_pearson_mean"] == pytest.approx(values.mean())
    assert row["heldout_pearson_sd"] == pytest.approx(values.std(ddof=1))
    assert row["n_seeds"] == 2
    assert "| knn |" in markdown and "± " in markdown and "### simulated" in markdown


def test_each_method_and_dataset_is_its_own_mlflow_run(runs, tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("bench-test")
    try:
        ids = log_runs_to_mlflow(runs)
        found = mlflow.search_runs(experiment_names=["bench-test"])
    finally:
        mlflow.set_tracking_uri(None)
    assert len(ids) == 3 and len(found) == 3
    assert set(found["tags.method"]) == {"none", "gene_mean", "knn"}
    assert set(found["tags.dataset"]) == {"simulated"}
    knn = found[found["tags.method"] == "knn"].iloc[0]
    expected = runs[runs["method"] == "knn"]["heldout_rmse"].mean()
    assert knn["metrics.heldout_rmse"] == pytest.approx(expected)


def test_masks_and_splits_come_from_the_protocol_the_masking_nodes_call(monkeypatch):
    # The benchmark is no second orchestrator: the protocol the masking nodes call (with its checks,
    # e.g. the MCV split's empty-cell refusal) makes every method's input.
    from scgapfill.eval import protocol

    def refuse(masked, mcv, target_sum):
        raise ValueError("3 cells have no counts left in the MCV train split")

    monkeypatch.setattr(protocol, "mcv_split", refuse)
    with pytest.raises(ValueError, match="MCV train split"):
        run_benchmark({**TINY, "benchmark": {**TINY["benchmark"], "methods": ["none"], "n_seeds": 1}})
