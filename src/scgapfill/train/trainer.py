"""The Lightning ``Trainer`` of a training run: device, precision, early stopping, checkpoint, history."""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from ..params import TrainParams
from .callbacks import EpochHistory, weight_average

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


def build_trainer(train_params: TrainParams, workdir: str, precision: str, n_batches: int,
             checkpoint: ModelCheckpoint, logger: Any, callbacks: list[Callback] | None) -> L.Trainer:
    return L.Trainer(
        accelerator=train_params.accelerator,
        devices=train_params.devices,
        num_nodes=train_params.num_nodes,
        strategy=train_params.strategy,
        precision=precision,
        max_epochs=train_params.max_epochs,
        callbacks=[
            EarlyStopping(
                monitor="val_loss", mode="min", patience=train_params.patience, min_delta=train_params.min_delta
            ),
            checkpoint,
            EpochHistory(os.path.join(workdir, HISTORY_FILE)),
            *([weight_average(train_params.ema_decay)] if train_params.ema_decay else []),
            *(callbacks or []),
        ],
        logger=logger if logger is not None else False,
        enable_progress_bar=train_params.enable_progress_bar,
        enable_model_summary=False,
        # Some CUDA kernels have no deterministic version: warn there instead of failing.
        deterministic="warn" if uses_cuda(train_params.accelerator) else True,
        default_root_dir=workdir,
        log_every_n_steps=max(1, min(50, n_batches)),
    )
