"""Training from shard files (:mod:`scgapfill.train.shards`): each rank reads the metadata and its own shards only.

The model, the optimiser and Lightning's run are those of :func:`~scgapfill.train.fit.fit_gapfill`;
what differs is where a rank's cells come from. They are already split between the ranks, so
Lightning's distributed sampler is off, and every rank runs the same number of batches, the fewest
any rank has (:func:`~scgapfill.train.shards.batch_limits`), since DDP's all-reduce waits for every rank.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from scgapfill.nn.bundle import GapFillBundle
from scgapfill.params import ModelParams, TrainParams, merged, parse
from scgapfill.train.fit import _bundle, _train, seeded_module
from scgapfill.train.resume import _NOT_IDENTITY
from scgapfill.train.shards import FIXED_TRAIN_KEYS, META_FILE, ShardError, batch_limits, rank_shards, read_shards
from scgapfill.train.trainer import resolve_precision

log = logging.getLogger(__name__)


def launcher_rank() -> tuple[int, int]:
    """``(global rank, world size)`` as the launcher set them (torchrun, then SLURM, Lightning's own
    order of precedence); ``(0, 1)`` for a process started alone."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    for env_type in (TorchElasticEnvironment, SLURMEnvironment):
        if env_type.detect():
            env = env_type()
            return int(env.global_rank()), int(env.world_size())
    return 0, 1


def shard_parameters(meta: dict, overrides: dict) -> dict:
    """The parameters saved with the shards, with the ``train`` and ``impute`` overrides laid over.

    What the preparation computed with (``model``, ``layout``, the split's ``train`` keys) is
    fixed: changing it would need other shards, so it is refused rather than silently ignored.
    """
    saved = meta["params"]
    for section, values in overrides.items():
        if section not in ("train", "impute"):
            raise ShardError(f"--set {section}.*: fixed when the shards were prepared ({META_FILE}); prepare them "
                             f"again with that setting (python -m scgapfill.train.shards ... --set {section}.KEY=VALUE)")
        for key in FIXED_TRAIN_KEYS if section == "train" else ():
            if key in values and values[key] != saved["train"][key]:
                raise ShardError(f"--set train.{key}={values[key]}: the shards were prepared with train.{key}="
                                 f"{saved['train'][key]}; prepare them again with the new value")
    return merged(saved, overrides)


def check_world_size(train_params: TrainParams, world_size: int) -> None:
    """``train.devices`` x ``train.num_nodes``, where given as a number, is the number of ranks started."""
    devices = train_params.devices
    if isinstance(devices, int) and devices * train_params.num_nodes != world_size:
        raise ShardError(
            f"train.devices={devices} x train.num_nodes={train_params.num_nodes} ranks, but {world_size} were "
            f"started; set train.devices to the processes started per node"
        )


def _fingerprint(meta: dict, model_params: ModelParams, train_params: TrainParams) -> str:
    """The checkpoint folder's name: the shards' fingerprint and the result-changing training settings."""
    identity = {
        "shards": meta["fingerprint"],
        "model": model_params.model_dump(),
        "train": {k: v for k, v in train_params.model_dump().items() if k not in _NOT_IDENTITY},
    }
    return hashlib.blake2b(json.dumps(identity, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()


def fit_from_shards(shard_dir: str | Path, meta: dict, params: dict, rank: int, world_size: int,
                    logger: Any = None, callbacks: list | None = None) -> GapFillBundle | None:
    """Train on this rank's shards (``rank``, ``rank + world_size``, ...); the bundle on rank 0, else ``None``.

    ``meta`` is the shards' :func:`~scgapfill.train.shards.read_metadata`, ``params`` the sections from
    :func:`shard_parameters`.
    """
    model_params, train_params = parse("model", params["model"]), parse("train", params["train"])
    check_world_size(train_params, world_size)
    indices = rank_shards(len(meta["shards"]), rank, world_size)
    data = read_shards(shard_dir, meta, indices)
    layout = meta["layout"]
    limits = batch_limits(meta, world_size, train_params.batch_size)
    log.info("rank %d of %d: %d training and %d validation cells; %d and %d batches per epoch on every rank",
             rank, world_size, len(data.train_cells), len(data.val_cells), *limits)
    module = seeded_module(data.scaler, layout, model_params, train_params)
    precision = resolve_precision(train_params)
    result = _train(module, data, layout, train_params, precision, logger, callbacks,
                    _fingerprint(meta, model_params, train_params), resumable=True, shard_batches=limits)
    if result is None:
        return None
    bundle = _bundle(*result, data, layout, model_params, train_params, precision,
                     info={"trained_from": "shards", "n_shards": len(meta["shards"]),
                           "shards_fingerprint": meta["fingerprint"]})
    bundle.impute_params = parse("impute", params.get("impute"))
    return bundle
