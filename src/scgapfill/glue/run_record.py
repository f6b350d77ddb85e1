"""An honest record of each run: its MLflow status, its outputs, and what a killed run left behind.

- SIGTERM (and Ctrl-C) becomes an exception, so the pipeline's error hooks run: the MLflow run ends KILLED and
  half-written files are removed by the write-then-rename of every dataset.
- A run killed with SIGKILL cannot report; the next run of the project marks its MLflow run KILLED
  (a run tagged with this host and a process id that no longer exists) and removes its temporaries.
- Every AnnData output carries the run's ids in ``uns["scgapfill_run"]``, and
  ``run_record.json`` lists which outputs the latest run wrote and how it ended, so a ``data/``
  folder left mixed by a failed run can be read for what it is.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Terminated is raised here (SIGTERM, Ctrl-C) and read by training, which keeps its checkpoint for it.
from scgapfill.train.resume import TEMP_PREFIX, Terminated, termination  # noqa: F401

log = logging.getLogger(__name__)

HOST_TAG, PID_TAG = "scgapfill.host", "scgapfill.pid"
# Temporaries named with their writer's pid: atomic_path's ".<name>.<pid>.<random>.tmp<suffix>" and
# the training folder "scgapfill-fit-<pid>-<random>".
_TEMP_FILE = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp(\.\w+)?$")
_TEMP_FIT_DIR = re.compile(rf"^{re.escape(TEMP_PREFIX)}(\d+)-")


def _raise_terminated(signum: int, frame: Any) -> None:
    # One stop is enough: a second Ctrl-C or SIGTERM would break off the cleanup the first one started.
    for sig in SigtermAsException.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


class SigtermAsException:
    """While active, SIGTERM and SIGINT (Ctrl-C) raise :class:`Terminated` in the main thread.

    Ctrl-C too: Python's KeyboardInterrupt, and Lightning's ``exit(1)`` after it, are not
    ``Exception``s, so Kedro would skip its error hooks and leave the MLflow run RUNNING.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, _raise_terminated) for sig in self.SIGNALS}

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(folders: list[Path]) -> list[Path]:
    """Delete the temporaries of writers that no longer run: ``.*.<pid>.*.tmp*`` files and training folders."""
    removed = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.rglob(".*.tmp*"):
            match = _TEMP_FILE.match(path.name)
            if match and path.is_file() and not process_alive(int(match.group(1))):
                path.unlink(missing_ok=True)
                removed.append(path)
    for path in Path(tempfile.gettempdir()).glob("scgapfill-fit-*"):
        match = _TEMP_FIT_DIR.match(path.name)
        if match and path.is_dir() and not process_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("Removed %d temporaries left by killed runs (%s)", len(removed), ", ".join(p.name for p in removed))
    return removed


def mark_stale_runs_killed(experiment_id: str, current_run_id: str | None) -> list[str]:
    """End as KILLED the RUNNING runs of this host whose process is gone (it was killed and could not report)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    host = socket.gethostname()
    runs = client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    )
    killed = []
    for run in runs:
        pid = run.data.tags.get(PID_TAG, "")
        if run.info.run_id == current_run_id or not pid.isdigit() or process_alive(int(pid)):
            continue
        client.set_terminated(run.info.run_id, status="KILLED")
        killed.append(run.info.run_id)
        log.warning("MLflow run %s was left RUNNING by a process that no longer exists (pid %s): marked KILLED",
                    run.info.run_id, pid)
    return killed


def tag_active_run() -> str | None:
    """Tag the active MLflow run with this host and pid (what a later start checks); its id, or None."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return None
    mlflow.set_tags({HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())})
    mark_stale_runs_killed(run.info.experiment_id, run.info.run_id)
    return run.info.run_id


def end_active_run_killed() -> None:
    import mlflow

    while mlflow.active_run() is not None:
        log.warning("MLflow run %s ends KILLED", mlflow.active_run().info.run_id)
        mlflow.end_run("KILLED")


def run_ids(session_id: str, mlflow_run_id: str | None, pipelines: list[str]) -> dict[str, Any]:
    return {"session_id": session_id, "mlflow_run_id": mlflow_run_id or "", "pipelines": pipelines,
            "host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
