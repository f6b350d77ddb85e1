"""The run record: SIGTERM as an exception, a dead run's temporaries and MLflow status cleaned up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pytest
from kedro.io import DatasetError

from scgapfill.data.atomic import atomic_path
from scgapfill.glue.run_record import (HOST_TAG, PID_TAG, SigtermAsException, Terminated, mark_stale_runs_killed,
                                  remove_stale_temporaries, termination)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_sigterm_raises_where_the_process_is_and_is_given_back():
    before = signal.getsignal(signal.SIGTERM)
    guard = SigtermAsException()
    guard.install()
    with pytest.raises(Terminated, match="SIGTERM"):
        os.kill(os.getpid(), signal.SIGTERM)
    guard.restore()
    assert signal.getsignal(signal.SIGTERM) is before


def test_termination_is_found_behind_kedros_wrappers():
    try:
        try:
            raise Terminated(signal.SIGTERM)
        except Terminated as inner:
            raise DatasetError("Failed while saving data to dataset") from inner
    except DatasetError as outer:
        assert str(termination(outer)) == "stopped by SIGTERM"
    assert termination(ValueError("bad input")) is None


def test_only_dead_writers_temporaries_are_removed(tmp_path):
    dead = tmp_path / "07_model_output" / f".imputed.h5ad.{dead_pid()}.abc123_x.tmp.h5ad"
    live = tmp_path / "07_model_output" / f".imputed.h5ad.{os.getpid()}.abc123_x.tmp.h5ad"
    output = tmp_path / "07_model_output" / "imputed.h5ad"
    for path in (dead, live, output):
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    fit_dir = Path(tempfile.mkdtemp(prefix=f"scgapfill-fit-{dead_pid()}-"))
    removed = remove_stale_temporaries([tmp_path])
    assert set(removed) >= {dead, fit_dir}
    assert not dead.exists() and not fit_dir.exists()
    assert live.exists() and output.exists()


def test_atomic_writes_name_their_writer(tmp_path):
    with atomic_path(tmp_path / "out.h5ad", ".h5ad") as tmp:
        assert tmp.name.startswith(f".out.h5ad.{os.getpid()}.") and tmp.name.endswith(".tmp.h5ad")
        tmp.write_text("x")
        assert remove_stale_temporaries([tmp_path]) == []  # its writer is alive
    assert (tmp_path / "out.h5ad").read_text() == "x"


@pytest.fixture
def tracking(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def test_runs_left_running_by_dead_processes_are_marked_killed(tracking):
    experiment = tracking.create_experiment("scgapfill")
    host = socket.gethostname()
    runs = {name: tracking.create_run(experiment, tags=tags, run_name=name).info.run_id for name, tags in {
        "dead": {HOST_TAG: host, PID_TAG: str(dead_pid())},
        "alive": {HOST_TAG: host, PID_TAG: str(os.getpid())},  # another run in progress
        "other_host": {HOST_TAG: host + "-elsewhere", PID_TAG: str(dead_pid())},
        "untagged": {},
    }.items()}
    assert mark_stale_runs_killed(experiment, current_run_id=None) == [runs["dead"]]
    status = {name: tracking.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {"dead": "KILLED", "alive": "RUNNING", "other_host": "RUNNING", "untagged": "RUNNING"}


def test_two_processes_log_to_one_sqlite_store_at_once(tmp_path):
    script = (
        "import sys, mlflow\n"
        f"mlflow.set_tracking_uri('sqlite:///{tmp_path / 'shared.db'}')\n"
        "mlflow.set_experiment('scgapfill')\n"
        "with mlflow.start_run(run_name=sys.argv[1]):\n"
        "    for step in range(40):\n"
        "        mlflow.log_metric('loss', 1.0 / (step + 1), step=step)\n"
    )
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'shared.db'}")  # creates the tables before the race
    mlflow.MlflowClient().search_experiments()
    procs = [subprocess.Popen([sys.executable, "-c", script, name], env=env, stderr=subprocess.PIPE, text=True)
             for name in ("first", "second")]
    errors = [proc.communicate(timeout=300)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("scgapfill").experiment_id])
    mlflow.set_tracking_uri(None)
    assert sorted((r.info.run_name, r.info.status) for r in runs) == [("first", "FINISHED"), ("second", "FINISHED")]
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) == 40 for r in runs)
