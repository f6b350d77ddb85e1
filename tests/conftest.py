"""Shared fixtures.

Every test runs with Kedro and MLflow telemetry disabled. Tests that run Kedro
itself use ``kedro_project``: a copy of the project (conf/, pyproject.toml,
.telemetry, an empty src/ and the data layer folders) in ``tmp_path``, with the
MLflow tracking store pointed at a sqlite file inside that copy, so nothing is
ever written to the repository's data/ folder, mlflow.db or .viz/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import anndata as ad
import pytest

import scgapfill

REPO_ROOT = Path(__file__).resolve().parents[1]

DATA_LAYERS = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "05_model_input",
    "06_models",
    "07_model_output",
    "08_reporting",
)


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kedro and MLflow must never phone home from a test run."""
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture
def run_script() -> Callable[..., subprocess.CompletedProcess]:
    """``run(script, *args, cwd=..., timeout=...)``: a script of ``benchmarks/`` run as a user runs it, with
    this checkout's package and one thread (a smoke run beside the suite); it must exit 0."""

    def run(script: str, *args: object, cwd: Path = REPO_ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / script), *map(str, args)], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-4000:]}"
        return proc

    return run


@pytest.fixture
def small_adata() -> ad.AnnData:
    """A tiny simulated counts AnnData (120 cells x 80 genes, 3 groups) with truth layers."""
    return scgapfill.simulate(n_cells=120, n_genes=80, n_groups=3, seed=1)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory outside the repository, made the current directory."""
    path = tmp_path / "work"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def tiny_params() -> dict:
    """Parameters for a fast data_processing run on a tiny simulation."""
    return {
        "input": {
            "path": "simulated",
            "label_key": None,
            "simulation": {"n_cells": 120, "n_genes": 80, "n_groups": 3, "seed": 1},
        },
        "qc": {"min_genes": 5, "max_counts": None, "max_pct_mito": None, "mito_prefix": "MT-", "min_cells": 3},
        "normalize": {"target_sum": 10000},
        "hvg": {"n_top_genes": 50, "flavor": "seurat"},
        "layout": {"strategy": "correlation", "seed": 0},
        "model": {"depth": 2},
    }


def _end_mlflow_runs() -> None:
    import mlflow

    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture
def _isolated_mlflow(monkeypatch: pytest.MonkeyPatch):
    """Restore MLflow's process-wide tracking/registry URIs and leave no active run behind.

    kedro-mlflow sets the URIs globally (and in the environment). It also leaves the
    run it started on mlflow's active-run stack: with ``tracking.run.nested: True``
    before_node_run pushes the same run once per node and after_pipeline_run pops
    one. A second session in the same process would then log into the first run.
    """
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", getattr(tracking_utils, "_tracking_uri", None))
    monkeypatch.setattr(registry_utils, "_registry_uri", getattr(registry_utils, "_registry_uri", None))
    _end_mlflow_runs()
    yield
    _end_mlflow_runs()


@pytest.fixture(scope="session")
def _mlflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store, migrated once: creating one takes seconds, copying it does not."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path.as_posix()}").search_experiments()
    return path


@pytest.fixture
def kedro_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _isolated_mlflow, _mlflow_db_template: Path) -> Path:
    """A throw-away copy of the Kedro project, bootstrapped and made the current directory."""
    from kedro.framework.startup import bootstrap_project

    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(REPO_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    shutil.copy2(REPO_ROOT / "pyproject.toml", project / "pyproject.toml")
    shutil.copy2(REPO_ROOT / ".telemetry", project / ".telemetry")
    # bootstrap_project requires the source folder to exist; the package itself is installed (editable).
    (project / "src").mkdir()
    for layer in DATA_LAYERS:
        (project / "data" / layer).mkdir(parents=True)
    shutil.copy2(_mlflow_db_template, project / "mlflow.db")
    (project / "conf" / "local" / "mlflow.yml").write_text(
        f"server:\n  mlflow_tracking_uri: sqlite:///{(project / 'mlflow.db').as_posix()}\n"
    )
    monkeypatch.chdir(project)
    bootstrap_project(project)
    return project
