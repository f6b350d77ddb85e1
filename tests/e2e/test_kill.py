"""Killed runs, as a user's scheduler or Ctrl-C would kill them, in real subprocesses.

SIGTERM and SIGKILL, each during training and during the saving of a file: the MLflow status
must never read FINISHED for a run that did not finish, no half-written file may be left where an
output is expected, a killed run's temporaries go at the next start, and a run started again with
the same data and parameters resumes training from the killed run's last epoch.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import mlflow
import pytest

from .conftest import TRAINING_PARAMS, kedro, make_project_copy, project_env

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
# Epochs of a few batches: a stop lands in training seconds after it starts, and a whole run is short.
PARAMS = (TRAINING_PARAMS.replace("train.max_epochs=3", "train.max_epochs=6")
          + ",train.patience=6,train.cells_per_epoch=64,train.max_val_cells=64")
MODEL_FILE = "gapfill_model.pt"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project_copy(tmp_path_factory.mktemp("killed"))


@pytest.fixture(scope="module")
def client(project):
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def start(project: Path, pause_in: str | None = None, params: str = PARAMS) -> tuple[subprocess.Popen, Path]:
    marker = project / f"saving-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "kedro"] if pause_in is None else \
        [sys.executable, str(HERE / "pause_while_saving.py"), pause_in, str(marker)]
    log = open(project / "run.log", "a")
    proc = subprocess.Popen([*command, "run", "--pipelines=training", f"--params={params}"], cwd=project,
                            env=project_env(project), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, marker


def wait_until(proc: subprocess.Popen, ready, project: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended before the kill:\n{(project / 'run.log').read_text()[-3000:]}"
        assert time.monotonic() < deadline, "the run never reached the point of the kill"
        time.sleep(0.05)


def in_training(project: Path):
    return lambda: any((project / "data" / "06_models" / "checkpoints").glob("*/last.ckpt"))


def kill(proc: subprocess.Popen, sig: signal.Signals) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=120)


def last_run(client) -> mlflow.entities.Run:
    experiment = client.get_experiment_by_name("scgapfill")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]


def temporaries(project: Path) -> list[Path]:
    return [p for p in (project / "data").rglob("*") if ".tmp" in p.name]


def record(project: Path) -> dict:
    return json.loads((project / "data" / "08_reporting" / "run_record.json").read_text())


def test_sigkill_in_training_then_sigterm_while_saving_the_model(project, client):
    proc, _ = start(project)
    wait_until(proc, in_training(project), project)
    assert kill(proc, signal.SIGKILL) == -signal.SIGKILL
    killed = last_run(client)
    assert killed.info.status == "RUNNING"  # a SIGKILLed process cannot report: the next start marks it

    proc, marker = start(project, pause_in=MODEL_FILE)
    wait_until(proc, marker.exists, project)
    log = (project / "run.log").read_text()
    assert "Resuming training from" in log
    assert client.get_run(killed.info.run_id).info.status == "KILLED"
    assert Path(marker.read_text()).exists()  # the model's temporary, complete but not yet renamed
    assert kill(proc, signal.SIGTERM) != 0
    assert last_run(client).info.status == "KILLED"
    assert record(project)["status"] == "killed" and "SIGTERM" in record(project)["error"]
    assert temporaries(project) == []  # removed on the way out
    assert not list((project / "data" / "06_models").glob(f"{MODEL_FILE}/*/{MODEL_FILE}"))


def test_sigkill_while_saving_then_sigterm_in_training_then_resume(project, client):
    proc, marker = start(project, pause_in="imputed.h5ad")
    wait_until(proc, marker.exists, project)
    assert kill(proc, signal.SIGKILL) == -signal.SIGKILL
    leftover = Path(marker.read_text())
    assert leftover.exists() and not (project / "data" / "07_model_output" / "imputed.h5ad").exists()
    killed = last_run(client)

    proc, _ = start(project)
    wait_until(proc, in_training(project), project)
    assert not leftover.exists(), "a killed run's temporary must go at the next start"
    assert client.get_run(killed.info.run_id).info.status == "KILLED"
    assert kill(proc, signal.SIGTERM) != 0
    interrupted = last_run(client)
    assert interrupted.info.status == "KILLED"
    assert record(project)["status"] == "killed"

    result = kedro(project, "run", "--pipelines=training", f"--params={PARAMS}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Resuming training from" in result.stdout + result.stderr
    finished = last_run(client)
    assert finished.info.status == "FINISHED" and client.get_run(interrupted.info.run_id).info.status == "KILLED"
    summary = json.loads((project / "data" / "08_reporting" / "training_summary.json").read_text())
    assert summary["epochs"] == 6  # the killed run's epochs count, the resumed ones follow them
    assert record(project)["status"] == "finished" and record(project)["mlflow_run_id"] == finished.info.run_id
    imputed = ad.read_h5ad(project / "data" / "07_model_output" / "imputed.h5ad")
    assert imputed.uns["scgapfill_run"]["mlflow_run_id"] == finished.info.run_id
    assert temporaries(project) == [] and not list((project / "data" / "06_models" / "checkpoints").glob("*/*"))


def output_since(project: Path, offset: int) -> str:
    return (project / "run.log").read_text()[offset:]


def resumes_at(checkpoint: Path) -> int:
    """The 1-based epoch a rerun starts at: Lightning's "epoch" in last.ckpt is the 0-based epoch it ended."""
    import torch

    return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]) + 2


def test_sigterm_and_ctrl_c_in_training_end_on_one_line_with_the_signals_exit_code(tmp_path):
    # kedro-mlflow's error hook raised UnboundLocalError once the run was ended KILLED, and that error
    # was the last line a stopped run printed. Whatever the hooks do, the stop is the last word.
    # SIGTERM first, then Ctrl-C in the rerun, which must start at the epoch the first line named.
    project = make_project_copy(tmp_path / "stopped")
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    try:
        resume_from = None
        for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
            offset = (project / "run.log").stat().st_size if (project / "run.log").exists() else 0
            proc, _ = start(project, params=PARAMS)
            if resume_from is None:
                wait_until(proc, in_training(project), project)
            else:  # the epoch the last line promised is the epoch the rerun starts at
                wait_until(proc, lambda: re.search(r"Epoch \d+/6", output_since(project, offset)), project)
                assert "Resuming training from" in output_since(project, offset)
                first_epoch = int(re.search(r"Epoch (\d+)/6", output_since(project, offset)).group(1))
                assert first_epoch == resume_from
            assert kill(proc, sig) == code
            output = output_since(project, offset)
            checkpoint = next((project / "data" / "06_models" / "checkpoints").glob("*/last.ckpt"))
            resume_from = resumes_at(checkpoint)
            lines = [line for line in output.splitlines() if line.strip()]
            assert lines[-1] == f"stopped by {sig.name}; status KILLED; rerun to resume from epoch {resume_from}", \
                output[-3000:]
            assert "UnboundLocalError" not in output and "Traceback" not in output
            assert last_run(client).info.status == "KILLED"
            assert record(project)["status"] == "killed"
            assert record(project)["error"] == f"Terminated: stopped by {sig.name}"
            assert temporaries(project) == []
    finally:
        mlflow.set_tracking_uri(None)
