"""``kedro run --pipelines=training`` end to end: outputs, MLflow run, registered model, inference."""

from __future__ import annotations

import json

import anndata as ad
import mlflow
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from .conftest import kedro

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tracking(trained_project):
    mlflow.set_tracking_uri(f"sqlite:///{trained_project / 'mlflow.db'}")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def test_outputs_are_written(trained_project):
    data = trained_project / "data"
    scored = ad.read_h5ad(data / "07_model_output" / "imputed_masked.h5ad")
    masked = ad.read_h5ad(data / "05_model_input" / "masked.h5ad")
    assert scored.layers["imputed"].shape == masked.shape
    assert list(scored.obs_names) == list(masked.obs_names) and list(scored.var_names) == list(masked.var_names)
    assert np.isfinite(scored.layers["imputed"]).all() and scored.layers["imputed"].min() >= 0
    # The deliverable: every QC'd cell and gene, every observed count as it was.
    imputed = ad.read_h5ad(data / "07_model_output" / "imputed.h5ad")
    normalized = ad.read_h5ad(data / "02_intermediate" / "normalized.h5ad")
    assert imputed.shape == normalized.shape == (693, 765)
    assert list(imputed.var_names) == list(normalized.var_names) and imputed.var["gapfill_modelled"].all()
    assert (imputed.layers["counts"] != normalized.layers["counts"]).nnz == 0
    # A composition (impute.scale's default): every cell sums to 1e4; in counts, to its observed depth.
    np.testing.assert_allclose(np.expm1(imputed.layers["imputed"].astype(np.float64)).sum(axis=1), 1e4, rtol=1e-4)
    np.testing.assert_allclose(imputed.layers["imputed_counts"].sum(axis=1), imputed.obs["size_factor"], rtol=1e-4)
    assert imputed.uns["gapfill"]["scale"] == "composition"
    text = (data / "08_reporting" / "metrics.json").read_text()
    assert "NaN" not in text  # strict JSON: an undefined score is null
    report = json.loads(text)
    for key in ("heldout_rmse", "heldout_pearson", "mcv_mse", "mcv_poisson", "ari_before", "ari_after"):
        assert np.isfinite(report["metrics"][key]), key
    assert set(report["baselines"]) == {"none", "gene_mean", "knn"}
    scores = pd.read_csv(data / "08_reporting" / "method_scores.csv")
    assert list(scores["method"]) == ["unet", "none", "gene_mean", "knn"]
    per_cell = pd.read_csv(data / "08_reporting" / "per_cell_scores.csv")
    assert len(per_cell) == masked.n_obs and per_cell["label"].notna().all()
    for plot in ("heldout_scatter.png", "umap_before_after.png"):
        assert (data / "08_reporting" / "plots" / plot).stat().st_size > 10_000
    assert list((data / "06_models" / "gapfill_model.pt").iterdir()), "versioned model missing"
    # One run's outputs, recognisable as such; nothing left to resume or clean.
    record = json.loads((data / "08_reporting" / "run_record.json").read_text())
    assert record["status"] == "finished" and record["error"] == "" and record["pipelines"] == ["training"]
    assert {"imputed", "imputed_masked", "metrics_report", "gapfill_model"} <= set(record["outputs_written"])
    assert imputed.uns["scgapfill_run"] == {k: record[k] for k in ("session_id", "mlflow_run_id")}
    assert not list((data / "06_models" / "checkpoints").glob("*/*"))


def test_one_mlflow_run_with_params_curves_metrics_and_artifacts(trained_project, tracking):
    experiment = tracking.get_experiment_by_name("scgapfill")
    # By name: the inference tests add runs of their own to the experiment.
    runs = tracking.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'training'")
    assert len(runs) == 1, "one kedro run must give exactly one MLflow run"
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["scgapfill.pid"].isdigit()
    assert run.data.params["train.lr"] == "0.001" and run.data.params["model.depth"] == "2"
    history = tracking.get_metric_history(run.info.run_id, "train_loss")
    summary = json.loads((trained_project / "data" / "08_reporting" / "training_summary.json").read_text())
    assert len(history) == summary["epochs"] >= 1
    assert len(tracking.get_metric_history(run.info.run_id, "val_loss")) >= 1
    for key in ("heldout_rmse", "heldout_pearson", "mcv_mse", "ari_after", "knn.heldout_pearson"):
        assert key in run.data.metrics, key
    artifacts = {a.path for a in tracking.list_artifacts(run.info.run_id)}
    artifacts |= {a.path for a in tracking.list_artifacts(run.info.run_id, "plots")}
    assert {"gene_layout.json", "training_summary.json", "plots/heldout_scatter.png",
            "plots/umap_before_after.png", "plots/loss_curves.png"} <= artifacts


def test_registered_model_loads_back_and_imputes(trained_project, tracking):
    info = json.loads((trained_project / "data" / "06_models" / "mlflow_model_info.json").read_text())
    assert info["registered_model"] == "scgapfill-unet" and info["registered_version"] == 1
    model = mlflow.pyfunc.load_model("models:/scgapfill-unet/1")
    masked = ad.read_h5ad(trained_project / "data" / "05_model_input" / "masked.h5ad")
    assert model.metadata.get_input_schema().input_names() == list(masked.var_names)
    # The whole data set: the neighbour-context channel looks up each cell's neighbours
    # among the cells it is given, so a subset of cells would get other contexts.
    frame = pd.DataFrame(masked.layers["counts"].toarray(), index=masked.obs_names, columns=masked.var_names)
    out = model.predict(frame)
    imputed = ad.read_h5ad(trained_project / "data" / "07_model_output" / "imputed_masked.h5ad")
    assert list(out.columns) == list(masked.var_names) and list(out.index) == list(masked.obs_names)
    np.testing.assert_allclose(out.to_numpy(), imputed.layers["imputed"], atol=1e-4)
    # With impute.form level, observed values are kept, zeros filled and each cell rescaled to a
    # composition: the observed counts keep their proportions, one factor per cell. form and
    # fill_only_zeros reach predict (declared in the signature): without keeping, observed values are replaced.
    levels = model.predict(frame, params={"form": "level"}).to_numpy()
    counts = masked.layers["counts"].toarray()
    observed = counts > 0

    def spread_of_observed_shares(values: np.ndarray) -> np.ndarray:
        ratio = np.where(observed, np.expm1(values.astype(np.float64)) / np.where(observed, counts, 1.0), np.nan)
        return np.nanmax(ratio, axis=1) / np.nanmin(ratio, axis=1)

    np.testing.assert_allclose(np.expm1(out.to_numpy().astype(np.float64)).sum(axis=1), 1e4, rtol=1e-4)
    np.testing.assert_allclose(spread_of_observed_shares(levels), 1.0, rtol=1e-3)
    everything = model.predict(frame, params={"form": "level", "fill_only_zeros": False}).to_numpy()
    assert spread_of_observed_shares(everything).mean() > 1.01


def test_inference_on_new_data_aligns_genes_by_name(trained_project, tmp_path):
    masked = ad.read_h5ad(trained_project / "data" / "05_model_input" / "masked.h5ad")
    genes = list(masked.var_names)
    missing, kept = genes[:10], genes[10:]
    rng = np.random.default_rng(0)
    extra = sp.csr_matrix(rng.poisson(1.0, size=(masked.n_obs, 3)).astype(np.float32))
    counts = sp.hstack([masked.layers["counts"][:, 10:][:, ::-1], extra]).tocsr()  # other order, extra genes
    new = ad.AnnData(X=counts, obs=masked.obs[[]].copy())
    new.var_names = kept[::-1] + ["EXTRA1", "EXTRA2", "EXTRA3"]
    path = tmp_path / "new.h5ad"
    new.write_h5ad(path)
    before = path.read_bytes()

    result = kedro(trained_project, "run", "--pipelines=inference",
                   f"--params=input.path={path},inference.uri=models:/scgapfill-unet/1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = ad.read_h5ad(trained_project / "data" / "07_model_output" / "inference_imputed.h5ad")
    assert list(out.var_names) == genes and out.n_obs == masked.n_obs
    assert out.layers["imputed"].shape == out.shape and np.isfinite(out.layers["imputed"]).all()
    report = json.loads((trained_project / "data" / "08_reporting" / "gene_alignment_report.json").read_text())
    assert sorted(report["missing_genes"]) == sorted(missing) and report["n_missing"] == len(missing)
    assert report["n_model_genes"] == len(genes) and report["n_present"] == len(kept)
    assert report["n_extra"] == 3 and report["extra_genes"] == ["EXTRA1", "EXTRA2", "EXTRA3"]
    assert path.read_bytes() == before, "the user's file must not be modified"


def test_bad_model_uri_fails_with_a_clear_message(trained_project):
    result = kedro(trained_project, "run", "--pipelines=inference", "--params=inference.uri=models:/no-such-model/7")
    assert result.returncode != 0
    assert "inference.uri" in result.stdout + result.stderr
