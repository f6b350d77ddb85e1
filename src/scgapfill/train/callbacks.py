"""Lightning callbacks of the training run: the per-epoch history and log line, the moving average of the weights."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, WeightAveraging

log = logging.getLogger(__name__)


class EpochHistory(Callback):
    """Writes (epoch, train_loss, val_loss, seconds) to a JSON file on rank 0.

    A file, not an attribute: with ``ddp_spawn``/``ddp_fork`` the callbacks run in
    child processes and their attributes never reach the caller.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: list[dict] = []
        self._start = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed run continues the history its killed predecessor wrote, up to the restored epoch.
        if trainer.current_epoch > 0 and os.path.exists(self.path):
            with open(self.path) as stream:
                self.rows = [row for row in json.load(stream) if row["epoch"] < trainer.current_epoch]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs the epoch's validation before this hook, so val_loss is current.
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        self.rows.append(
            {
                "epoch": int(trainer.current_epoch),
                "train_loss": float(metrics.get("train_loss", float("nan"))),
                "val_loss": float(metrics.get("val_loss", float("nan"))),
                "seconds": time.perf_counter() - self._start,
            }
        )
        tmp = self.path + ".tmp"
        with open(tmp, "w") as stream:
            json.dump(self.rows, stream)
        os.replace(tmp, self.path)


class EpochLog(Callback):
    """One INFO line per epoch: what a run shows where the progress bar does not (a file, a pipe)."""

    def __init__(self) -> None:
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        # Timed like EpochHistory (validation included), so the figures match the run's summary.
        seconds = time.perf_counter() - self._start
        metrics = trainer.callback_metrics
        log.info(
            "Epoch %d/%d: train_loss %.4f, val_loss %.4f, %.1f s, %.0f cells/s",
            trainer.current_epoch + 1, trainer.max_epochs,
            float(metrics.get("train_loss", math.nan)), float(metrics.get("val_loss", math.nan)),
            seconds, _train_cells(trainer) / seconds if seconds > 0 else math.nan,
        )


def _train_cells(trainer: L.Trainer) -> float:
    """Cells one epoch trains on (all ranks together; fewer than the training set with ``train.cells_per_epoch``),
    NaN where the loader has no sized dataset."""
    try:
        loader = trainer.train_dataloader
        return float(min(len(loader.dataset), trainer.num_training_batches * loader.batch_size))
    except (AttributeError, TypeError):
        return math.nan


@torch.no_grad()
def _ema_update(averaged: torch.Tensor, current: torch.Tensor, num_averaged: Any, decay: float) -> torch.Tensor:
    return decay * averaged + (1 - decay) * current


def weight_average(decay: float) -> WeightAveraging:
    """Lightning's EMA of the weights, every optimiser step.

    Not ``EMAWeightAveraging``: its update is a closure, which ``ddp_spawn`` cannot pickle.
    """
    return WeightAveraging(avg_fn=functools.partial(_ema_update, decay=decay))
