"""The per-epoch curves go into the pipeline's MLflow run without ending it."""

from __future__ import annotations

import mlflow
import pytest

from scgapfill.tracking import active_run_logger
from scgapfill.train.fit import fit_gapfill


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow.MlflowClient()
    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def test_training_leaves_the_run_open_for_its_owner(tracking, counts, layout, model_params, train_params):
    # Lightning's MLFlowLogger ends the run FINISHED when fit returns; a pipeline killed after
    # training then read FINISHED. The run must stay RUNNING until kedro-mlflow ends it.
    assert active_run_logger() is None  # no run: nothing is logged
    with mlflow.start_run() as run:
        fit_gapfill(counts, layout, model_params, train_params.model_copy(update={"max_epochs": 2}),
                    logger=active_run_logger())
        after_fit = tracking.get_run(run.info.run_id)
        assert after_fit.info.status == "RUNNING"
        assert len(tracking.get_metric_history(run.info.run_id, "val_loss")) == 2  # the curves did arrive
    assert tracking.get_run(run.info.run_id).info.status == "FINISHED"
