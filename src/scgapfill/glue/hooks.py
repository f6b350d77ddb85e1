"""Project hooks: parameters checked before anything runs, and an honest record of every run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from scgapfill.data.atomic import atomic_path
from scgapfill.params import Parameters, validate_all
from scgapfill.glue.run_record import SigtermAsException, end_active_run_killed, remove_stale_temporaries, run_ids, \
    tag_active_run, termination

RUN_RECORD = Path("data") / "08_reporting" / "run_record.json"


class ParameterValidationHook:
    """Validate every parameter section as soon as the context exists, before any node runs, and hand
    the nodes the typed sections.

    A wrong value (``--params="qc.min_genes=-1"``) stops the run at once with the
    dotted key named, instead of failing half-way through a pipeline. The sections are parsed here
    once: a node's ``params:<section>`` input arrives as its model (``params:train`` a
    :class:`~scgapfill.params.TrainParams`, ``parameters`` a :class:`~scgapfill.params.Parameters`),
    and the node's own ``parse`` (there for calls from a notebook, with dicts) passes it through.
    Other hooks (kedro-mlflow's parameter logging) see the catalog's plain values.
    """

    def __init__(self) -> None:
        self._parsed: dict[str, Any] = {}

    @hook_impl
    def after_context_created(self, context) -> None:
        self._parsed = validate_all(context.params)

    @hook_impl
    def before_node_run(self, node, inputs: dict[str, Any]) -> dict[str, Any] | None:
        typed = {}
        for name in inputs:
            if name == "parameters":
                typed[name] = Parameters(**self._parsed)
            elif name.startswith("params:") and name[len("params:"):] in self._parsed:
                typed[name] = self._parsed[name[len("params:"):]]
        return typed or None


class RunRecordHook:
    """The run's status in MLflow and on disk (see :mod:`scgapfill.glue.run_record`).

    ``data/08_reporting/run_record.json`` says which outputs the latest run wrote and how it
    ended (finished, failed, killed); every AnnData it wrote carries the same ids in
    ``uns["scgapfill_run"]``.
    """

    def __init__(self) -> None:
        self._sigterm = SigtermAsException()
        self._project = Path.cwd()
        self._ids: dict[str, Any] = {}
        self._written: list[str] = []
        self._catalog: Any = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self._project = Path(context.project_path)

    @hook_impl(trylast=True)  # after kedro-mlflow has opened the run it tags
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        self._sigterm.install()
        remove_stale_temporaries([self._project / "data"])
        self._ids = run_ids(run_params["run_id"], tag_active_run(), list(run_params.get("pipeline_names") or []))
        self._written, self._catalog = [], catalog

    @hook_impl
    def before_dataset_saved(self, dataset_name: str, data: Any, node) -> None:
        import anndata as ad

        if isinstance(data, ad.AnnData) and self._ids:
            data.uns["scgapfill_run"] = {k: self._ids[k] for k in ("session_id", "mlflow_run_id")}

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node) -> None:
        from kedro.io import MemoryDataset

        if not isinstance(self._catalog.get(dataset_name) if self._catalog else None, MemoryDataset):
            self._written.append(dataset_name)

    @hook_impl
    def after_pipeline_run(self, run_params: dict, run_result, pipeline, catalog) -> None:
        self._finish("finished", None)

    @hook_impl(tryfirst=True)  # before kedro-mlflow ends the run FAILED
    def on_pipeline_error(self, error: Exception, run_params: dict, pipeline, catalog) -> None:
        stopped = termination(error)
        if stopped is not None:
            end_active_run_killed()
        self._finish("failed" if stopped is None else "killed", stopped or error)

    def _finish(self, status: str, error: Exception | None) -> None:
        self._sigterm.restore()
        if not self._ids:
            return
        record = {**self._ids, "status": status, "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "error": "" if error is None else f"{type(error).__name__}: {error}".splitlines()[0],
                  "outputs_written": self._written}
        with atomic_path(self._project / RUN_RECORD, ".json") as tmp:
            tmp.write_text(json.dumps(record, indent=2))
