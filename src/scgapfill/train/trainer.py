"""The Lightning ``Trainer`` of a training run: device, precision, threads, early stopping, checkpoint, history."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from scgapfill.params import TrainParams
from scgapfill.train.callbacks import EpochHistory, EpochLog, weight_average

HISTORY_FILE = "history.json"


def uses_cuda(accelerator: str) -> bool:
    """Whether Lightning will train on a CUDA GPU with this accelerator setting."""
    name = str(accelerator).lower()
    return name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available())


def resolve_precision(train_params: TrainParams) -> str:
    """``train.precision`` if set, else bf16 mixed precision on a GPU that has it, 32-bit otherwise."""
    if train_params.precision:
        return str(train_params.precision)
    if uses_cuda(train_params.accelerator) and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def progress_bar_on(setting: bool | None) -> bool:
    """``train.enable_progress_bar``; ``None`` (auto): only where stdout is a terminal.

    Lightning's rich bar writes nothing to a file or a pipe until the run ends.
    """
    if setting is not None:
        return bool(setting)
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def resolve_num_threads(setting: int) -> int:
    """``train.num_threads``; 0 (auto): the CPUs this process may run on, not all the machine's."""
    if setting:
        return int(setting)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on macOS and Windows
        return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(n_threads: int) -> Iterator[None]:
    """torch's intra-op thread count set for the block, then given back (a notebook's torch stays as it was)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def epoch_cells(train_params: TrainParams, n_train_cells: int) -> int:
    """Cells one epoch trains on: ``train.cells_per_epoch`` rounded up to whole batches, at most all of them."""
    if not train_params.cells_per_epoch:
        return n_train_cells
    batches = math.ceil(train_params.cells_per_epoch / train_params.batch_size)
    return min(n_train_cells, batches * train_params.batch_size)


def max_epochs(train_params: TrainParams, epoch_batches: int) -> int:
    """``train.max_epochs``, fewer where ``train.max_steps`` runs out first.

    The step budget is rounded up to whole epochs: Lightning does not validate an epoch that
    ``max_steps`` cuts short, so its steps would never reach the kept checkpoint.
    """
    if train_params.max_steps < 0:
        return train_params.max_epochs
    return max(1, min(train_params.max_epochs, math.ceil(train_params.max_steps / max(epoch_batches, 1))))


def build_trainer(train_params: TrainParams, workdir: str, precision: str, n_batches: int, n_cells: int,
             checkpoint: ModelCheckpoint, logger: Any, callbacks: list[Callback] | None,
             val_batches: int | None = None) -> L.Trainer:
    """The Trainer; ``n_batches`` training batches per epoch at most, from ``n_cells`` training cells.

    ``val_batches`` (``None``: Lightning's distributed sampler shards one shared data set) says that
    each rank already holds its own cells (:mod:`scgapfill.train.shards`): the sampler is off and every
    rank runs ``n_batches`` training and ``val_batches`` validation batches, the fewest any rank has,
    since a rank that runs one batch more waits forever in an all-reduce the others never join.
    """
    progress_bar = progress_bar_on(train_params.enable_progress_bar)
    epoch_batches = min(n_batches, math.ceil(epoch_cells(train_params, n_cells) / train_params.batch_size))
    return L.Trainer(
        accelerator=train_params.accelerator,
        devices=train_params.devices,
        num_nodes=train_params.num_nodes,
        strategy=train_params.strategy,
        precision=precision,
        max_epochs=max_epochs(train_params, epoch_batches),
        # The loader shuffles, so each epoch's batches are a fresh random draw of the training cells.
        limit_train_batches=epoch_batches,
        limit_val_batches=1.0 if val_batches is None else val_batches,
        use_distributed_sampler=val_batches is None,
        callbacks=[
            EarlyStopping(
                monitor="val_loss", mode="min", patience=train_params.patience, min_delta=train_params.min_delta
            ),
            checkpoint,
            EpochHistory(os.path.join(workdir, HISTORY_FILE)),
            *([weight_average(train_params.ema_decay)] if train_params.ema_decay else []),
            *([] if progress_bar else [EpochLog()]),
            *(callbacks or []),
        ],
        logger=logger if logger is not None else False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        # Some CUDA kernels have no deterministic version: warn there instead of failing.
        deterministic="warn" if uses_cuda(train_params.accelerator) else True,
        default_root_dir=workdir,
        log_every_n_steps=max(1, min(50, n_batches)),
    )
