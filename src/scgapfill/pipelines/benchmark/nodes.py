"""Nodes of the benchmark pipeline."""

from __future__ import annotations

import pandas as pd

from scgapfill.eval import benchmark


def run_benchmark(parameters: dict) -> pd.DataFrame:
    """One row per data set x method x mask seed (``benchmark.*`` chooses them)."""
    return benchmark.run_benchmark(parameters)


def summarise_benchmark(runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Mean ± sd over seeds; logs one MLflow run per data set x method when tracking is on."""
    import mlflow

    table, markdown = benchmark.summarise(runs)
    if mlflow.active_run() is not None:
        benchmark.log_runs_to_mlflow(runs)
    return table, markdown
