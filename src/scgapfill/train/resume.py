"""Where a training run keeps its checkpoints, and whether it picks up a killed run's last epoch.

With ``train.checkpoint_dir`` set, a run writes ``last.ckpt`` (weights, optimiser, early stopping,
epoch) into a folder named after everything that determines the run: the counts, the layout and
the parameters that change the result. Started again after a kill with the same inputs and
``train.resume: auto``, it continues from that epoch instead of from scratch. The folder is removed
once training has finished, since the trained bundle is then the product.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import scipy.sparse as sp

from scgapfill.graph.cellgraph import counts_digest
from scgapfill.params import ModelParams, TrainParams

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.ckpt"
# Temporary training folders carry the pid, so a later start can tell a dead run's from a live one's.
TEMP_PREFIX = "scgapfill-fit-"
# Settings that change where or how fast a run goes, not what it computes.
_NOT_IDENTITY = {"resume", "checkpoint_dir", "enable_progress_bar", "num_workers", "num_threads"}


class Terminated(Exception):
    """The process was asked to stop (SIGTERM, Ctrl-C): raised where it was, so cleanup and error hooks run.

    ``checkpoint`` is the ``last.ckpt`` a rerun resumes from, set on the way out of training
    (:func:`~scgapfill.train.resume.checkpoint_folder`); None when nothing can be resumed.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.checkpoint: str | None = None
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """A shell's code for a process ended by the signal: 130 for Ctrl-C, 143 for SIGTERM."""
        return 128 + self.signum

    def summary(self) -> str:
        """The one line a stopped run ends on: what stopped it, its MLflow status and how to go on."""
        epoch = resumed_epoch(self.checkpoint) if self.checkpoint else None
        if epoch is not None:
            then = f"rerun to resume from epoch {epoch}"
        elif self.checkpoint:
            then = f"rerun to resume from {self.checkpoint}"
        else:
            then = "rerun to start again (no training checkpoint to resume from)"
        return f"{self}; status KILLED; {then}"


def termination(error: BaseException | None) -> Terminated | None:
    """The :class:`Terminated` behind ``error``, through the wrappers (Kedro's ``DatasetError``) around it
    and the errors of hooks that failed while it was handled (kedro-mlflow's)."""
    while error is not None and not isinstance(error, Terminated):
        error = error.__cause__ or error.__context__
    return error


def run_fingerprint(counts: sp.csr_matrix, layout: dict, model_params: ModelParams, train_params: TrainParams,
                    digest: Any = None) -> str:
    """A short hash of the counts, the layout and the result-changing parameters; ``digest``, the counts'
    :func:`~scgapfill.graph.cellgraph.counts_digest` where the caller has it already."""
    digest = (counts_digest(counts) if digest is None else digest).copy()
    identity = {
        "layout": layout,
        "model": model_params.model_dump(),
        "train": {k: v for k, v in train_params.model_dump().items() if k not in _NOT_IDENTITY},
    }
    digest.update(json.dumps(identity, sort_keys=True, default=_jsonable).encode())
    return digest.hexdigest()


def _jsonable(value: object) -> object:
    return value.tolist() if hasattr(value, "tolist") else str(value)


@contextmanager
def checkpoint_folder(train_params: TrainParams, fingerprint: str, resumable: bool = True) -> Iterator[tuple[str, str | None]]:
    """Yield ``(folder, checkpoint to resume from or None)``; the folder goes once the block succeeds.

    Without ``train.checkpoint_dir`` the folder is temporary and nothing can be resumed.
    """
    if not train_params.checkpoint_dir or not resumable:
        with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as workdir:
            yield workdir, None
        return
    folder = Path(train_params.checkpoint_dir) / fingerprint
    last = folder / LAST_CHECKPOINT
    resume_from = None
    if last.is_file() and train_params.resume == "auto":
        resume_from = str(last)
        log.info("Resuming training from %s (a run with the same data and parameters stopped there; "
                 "train.resume=never starts again from scratch)", last)
    elif folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield str(folder), resume_from
    except Exception as error:
        stop = termination(error)
        if stop is not None and last.is_file():  # what the stopped run's last line names
            stop.checkpoint = str(last)
        raise
    shutil.rmtree(folder, ignore_errors=True)


def resumed_epoch(checkpoint: str | os.PathLike) -> int | None:
    """The epoch a run resumed from ``checkpoint`` starts at, counted from 1 as the epoch log lines
    count (``Epoch 3/6``); None when the file cannot be read."""
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        # Lightning saves "epoch" as the 0-based epoch the checkpoint ended; the next one runs on resuming.
        return int(state["epoch"]) + 2
    except Exception:  # a checkpoint cut short by the stop itself: the line then names the file
        return None
