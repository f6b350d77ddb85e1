"""``fit_gapfill``: train the U-Net on a (held-out-masked) counts matrix and return a bundle.

Distributed training
--------------------
``strategy``, ``devices`` and ``num_nodes`` go to Lightning unchanged.

- ``ddp_spawn`` / ``ddp_fork``: the ranks run in child processes; only the
  calling process returns from :func:`fit_gapfill`, with one bundle. These are
  the strategies to use inside a Kedro node or a notebook.
- ``ddp``: Lightning re-launches ``sys.argv`` for every extra rank, so every
  rank runs the caller's whole script. Rank 0 returns the bundle, the other
  ranks return ``None``: callers must save or log only when the result is not
  ``None``. Inside ``kedro run`` this re-runs the whole pipeline per rank; use it
  only under ``torchrun``/SLURM launchers.

Ranks that each read only their own cells, prepared once by :mod:`scgapfill.train.shards`, train through
the same :func:`_train` and :func:`_bundle` (:mod:`scgapfill.train.sharded`).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader

from scgapfill.data.layout import to_grid, validate_layout
from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.graph.cellgraph import CellGraph, NeighbourWalk, cell_graph, context_source, counts_digest, graph_key
from scgapfill.nn.bundle import GapFillBundle
from scgapfill.params import ModelParams, TrainParams, parse
from scgapfill.train.data import CellDataset, ContextRows, GeneCollate, GeneScaler, as_counts_matrix
from scgapfill.train.module import GapFillModule
from scgapfill.train.resume import LAST_CHECKPOINT, checkpoint_folder, run_fingerprint
from scgapfill.train.trainer import (HISTORY_FILE, build_trainer, epoch_cells, resolve_num_threads, resolve_precision,
                      torch_threads, uses_cuda)

log = logging.getLogger(__name__)

def split_cells(n_cells: int, val_fraction: float, seed: int, max_val_cells: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of cell indices into (train, validation), both sorted and non-empty.

    ``max_val_cells`` (0: no cap) bounds the validation cells; the cells above it train.
    """
    if n_cells < 2:
        raise ValueError(f"training needs at least 2 cells (one for validation), got {n_cells}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"train.val_fraction must lie in (0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n_cells)
    n_val = min(max(int(round(val_fraction * n_cells)), 1), n_cells - 1, max_val_cells or n_cells)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _loaders(data: "TrainingData", n_genes: int, train_params: TrainParams) -> tuple[DataLoader, DataLoader]:
    collate = GeneCollate(n_genes, data.context)
    workers = dict(num_workers=train_params.num_workers, persistent_workers=train_params.num_workers > 0)
    pin = uses_cuda(train_params.accelerator)
    train = DataLoader(
        CellDataset(data.scaled, data.train_cells, data.cell_sizes),
        batch_size=train_params.batch_size,
        shuffle=True,
        collate_fn=collate,
        pin_memory=pin,
        **workers,
    )
    val = DataLoader(
        CellDataset(data.scaled, data.val_cells, data.cell_sizes),
        batch_size=train_params.batch_size,
        shuffle=False,
        collate_fn=collate,
        pin_memory=pin,
        **workers,
    )
    return train, val


@dataclass
class TrainingData:
    """The scaled values the network trains on, the split of the cells and the scaler.

    ``context`` is called with row indices of ``scaled`` (:class:`ContextRows`, or a precomputed
    array's rows for a shard). ``all_cells``: (training, validation) cells of the whole data set
    where these rows are one rank's shards of it; ``None`` where they are all of them.
    """

    scaled: sp.csr_matrix
    context: Any
    cell_sizes: np.ndarray
    train_cells: np.ndarray
    val_cells: np.ndarray
    scaler: GeneScaler
    all_cells: tuple[int, int] | None = None
    graph: CellGraph | None = None  # the context's graph, with the key of the counts it was built from

    @property
    def n_train_total(self) -> int:
        return len(self.train_cells) if self.all_cells is None else int(self.all_cells[0])

    @property
    def n_val_total(self) -> int:
        return len(self.val_cells) if self.all_cells is None else int(self.all_cells[1])


def check_layout(counts: sp.csr_matrix, layout: dict, model_params: ModelParams) -> None:
    """The layout holds the counts' genes on a grid the U-Net can halve ``model.depth`` times."""
    validate_layout(layout)
    if counts.shape[1] != len(layout["genes"]):
        raise ValueError(
            f"counts have {counts.shape[1]} genes but the layout has {len(layout['genes'])}; "
            "compute the layout on the same genes (align columns to layout['genes'])"
        )
    divisor = 2**model_params.depth
    height, width = layout["shape"]
    if height % divisor or width % divisor:
        raise ValueError(
            f"layout grid {height}x{width} is not divisible by 2**model.depth={divisor}; "
            f"recompute the layout with divisor={divisor} or lower model.depth"
        )


def training_data(
    counts: sp.csr_matrix, model_params: ModelParams, train_params: TrainParams, scaler: GeneScaler | None = None,
    copy: bool = True, digest: Any = None, positions: Any = None,
) -> TrainingData:
    """Log-normalise, split the cells, scale per gene (``scaler`` kept when given) and build the context.

    ``copy=False`` log-normalises a float64 CSR ``counts`` in place: for a caller that owns its copy
    and needs no counts afterwards (one matrix of the data's size less at the peak). ``digest`` is the
    counts' :func:`~scgapfill.graph.cellgraph.counts_digest` where the caller has hashed them already.
    ``positions`` (:class:`~scgapfill.graph.spatial.SpotPositions`, one per row of ``counts``) are the spots'
    coordinates, which ``model.context_graph`` ``spatial`` or ``both`` needs.
    """
    from scgapfill.graph.spatial import check_graph, context_graph

    if model_params.context_channel:
        check_graph(model_params.context_graph, positions, counts.shape[0])
    cell_sizes = size_factors(counts)
    graph_settings = (model_params.context_k, model_params.context_n_pcs, train_params.seed)
    key = ""
    if model_params.context_channel:  # before the counts change
        key = graph_key(counts_digest(counts) if digest is None else digest, *graph_settings)
    values = lognorm(counts, cell_sizes, copy=copy)
    train_cells, val_cells = split_cells(
        counts.shape[0], train_params.val_fraction, train_params.seed, train_params.max_val_cells
    )
    scaler = scaler or GeneScaler.fit(values[train_cells])
    context = graph = None
    if model_params.context_channel:
        graph = cell_graph(values, *graph_settings, key=key)
        if model_params.context_graph != "expression":
            # Keyed by nothing: imputation builds the same graph again from the positions it is given.
            graph = CellGraph(graph.pca, context_graph(model_params.context_graph, lambda: graph.graph, positions,
                                                       model_params.context_k))
        context = ContextRows(NeighbourWalk(graph.graph, model_params.context_steps),
                              context_source(values, model_params.context_space), model_params.context_space, scaler)
    return TrainingData(scaler.transform(values), context, cell_sizes, train_cells, val_cells, scaler, graph=graph)


def seeded_module(scaler: GeneScaler, layout: dict, model_params: ModelParams,
                  train_params: TrainParams) -> GapFillModule:
    """Every generator seeded from ``train.seed``, then a fresh module on ``layout`` with the scaler's gene scale."""
    L.seed_everything(train_params.seed, workers=True, verbose=False)
    gene_scale = to_grid(scaler.scale[None, :].astype(np.float32), layout)
    gene_scale[gene_scale == 0] = 1.0  # padding pixels
    return GapFillModule(model_params, train_params, torch.from_numpy(gene_scale), layout)


def _train(module: GapFillModule, data: TrainingData, layout: dict, train_params: TrainParams, precision: str,
           logger: Any, callbacks: list[Callback] | None, fingerprint: str,
           resumable: bool, shard_batches: tuple[int, int] | None = None) -> tuple[dict, list[dict], float] | None:
    """Run Lightning; the best checkpoint, the per-epoch rows and the wall time (``None`` off rank 0).

    ``shard_batches``: ``data`` holds this rank's own cells only, and every rank runs this many
    (training, validation) batches per epoch (see :func:`~scgapfill.train.trainer.build_trainer`).
    """
    train_loader, val_loader = _loaders(data, len(layout["genes"]), train_params)
    n_batches, val_batches = (len(train_loader), None) if shard_batches is None else shard_batches
    deterministic_before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    with checkpoint_folder(train_params, fingerprint, resumable) as (workdir, resume_from):
        # WeightAveraging puts the averaged weights into a checkpoint through its on_save_checkpoint
        # hook, which Lightning skips for weights-only checkpoints.
        checkpoint = ModelCheckpoint(
            dirpath=workdir, filename="best", monitor="val_loss", mode="min", save_top_k=1,
            save_weights_only=not train_params.ema_decay,
        )
        # The whole state of the latest epoch (optimiser, early stopping), for resuming after a kill.
        latest = ModelCheckpoint(dirpath=workdir, filename=LAST_CHECKPOINT[: -len(".ckpt")], save_top_k=1,
                                 enable_version_counter=False)
        trainer = build_trainer(train_params, workdir, precision, n_batches, data.n_train_total, checkpoint, logger,
                                [latest, *(callbacks or [])], val_batches)
        start = time.perf_counter()
        try:
            with torch_threads(resolve_num_threads(train_params.num_threads)), warnings.catch_warnings():
                # Resuming reuses a folder that holds checkpoints on purpose.
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
                trainer.fit(module, train_loader, val_loader, ckpt_path=resume_from)
        finally:
            # Lightning switches deterministic algorithms on globally; give the process back as it was.
            torch.use_deterministic_algorithms(deterministic_before[0], warn_only=deterministic_before[1])
        wall = time.perf_counter() - start
        if trainer.global_rank != 0:
            return None
        if not checkpoint.best_model_path or not os.path.exists(checkpoint.best_model_path):
            raise RuntimeError("training produced no checkpoint (did validation run?); check train.val_fraction")
        best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        with open(os.path.join(workdir, HISTORY_FILE)) as stream:
            rows = json.load(stream)
    return best, rows, wall


def _bundle(best: dict, rows: list[dict], wall: float, data: TrainingData, layout: dict, model_params: ModelParams,
            train_params: TrainParams, precision: str, info: dict | None = None) -> GapFillBundle:
    """The bundle of the best checkpoint; ``info`` adds to (or replaces) its ``info`` entries."""
    state_dict = {k[len("net.") :]: v.cpu() for k, v in best["state_dict"].items() if k.startswith("net.")}
    # The zip term's fitted dropout curve is not part of the network, but it is a finding about the data.
    curve = best["state_dict"].get("dropout_curve")
    curve_info = {} if curve is None else {
        "dropout_curve_intercept": float(curve[0]), "dropout_curve_slope": float(curve[1]),
    }
    history = pd.DataFrame(rows, columns=["epoch", "train_loss", "val_loss", "seconds"])
    seconds_per_epoch = float(history["seconds"].mean()) if len(history) else float("nan")
    cells_per_s = epoch_cells(train_params, data.n_train_total) / seconds_per_epoch if seconds_per_epoch > 0 \
        else float("nan")
    best_epoch = int(best.get("epoch", history["val_loss"].idxmin() if len(history) else -1))
    num_threads = resolve_num_threads(train_params.num_threads)
    log.info(
        "U-Net trained %d epochs in %.1f s (%.2f s/epoch, %.0f cells/s, %d torch threads); best epoch %d",
        len(history), wall, seconds_per_epoch, cells_per_s, num_threads, best_epoch,
    )
    return GapFillBundle(
        state_dict=state_dict,
        model_params=model_params,
        train_params=train_params,
        layout=dict(layout),
        scaler=data.scaler.to_dict(),
        gene_names=[str(g) for g in layout["genes"]],
        history=history[["epoch", "train_loss", "val_loss"]],
        best_epoch=best_epoch,
        seconds_per_epoch=seconds_per_epoch,
        cells_per_s=cells_per_s,
        info={
            "n_train_cells": data.n_train_total,
            "n_val_cells": data.n_val_total,
            "epochs_run": int(len(history)),
            "best_val_loss": float(history["val_loss"].min()) if len(history) else float("nan"),
            "train_seconds": float(wall),
            "epoch_seconds": [float(x) for x in history["seconds"]],
            "precision": precision,
            "accelerator": str(train_params.accelerator),
            "strategy": str(train_params.strategy),
            "num_threads": num_threads,
            **curve_info,
            **(info or {}),
        },
    )


def fit_gapfill(
    counts_csr: Any,
    layout: dict,
    model_params: ModelParams | dict | None = None,
    train_params: TrainParams | dict | None = None,
    logger: Any = None,
    callbacks: list[Callback] | None = None,
    start_from: GapFillBundle | None = None,
    positions: Any = None,
) -> GapFillBundle | None:
    """Train the gap-filling U-Net.

    Parameters
    ----------
    counts_csr
        Cells x genes raw counts the model may see (held-out entries already
        zero), scipy sparse or numpy, columns in ``layout["genes"]`` order.
    layout
        Gene layout from :func:`scgapfill.data.layout.compute_layout` with
        ``divisor=2**model_params.depth``.
    model_params, train_params
        Typed parameters (or dicts validated into them).
    logger
        A Lightning logger (e.g. ``MLFlowLogger``) for per-epoch curves; ``None`` logs nothing.
    callbacks
        Extra Lightning callbacks.
    start_from
        A trained bundle on the same layout: training continues from its weights and keeps its
        per-gene scaler (fine-tuning); ``None`` starts from random weights.
    positions
        The cells' :class:`~scgapfill.graph.spatial.SpotPositions` (one per row), for
        ``model.context_graph`` ``spatial`` or ``both``.

    Returns
    -------
    GapFillBundle or None
        The bundle with the best-validation weights. ``None`` on DDP ranks other
        than 0 under ``strategy="ddp"`` (see the module docstring).

    Notes
    -----
    Size factors are the row sums of ``counts_csr``; values are
    ``log1p(counts / sf * 1e4)``, scaled per gene (scale learned on the
    training cells) into [0, 1]. The neighbour context, if enabled, is computed
    once from all given cells, each cell's own row excluded.
    """
    model_params = parse("model", model_params)
    train_params = parse("train", train_params)
    counts = as_counts_matrix(counts_csr, "fit_gapfill")
    check_layout(counts, layout, model_params)
    if start_from is not None and list(start_from.gene_names) != [str(g) for g in layout["genes"]]:
        raise ValueError("fine-tuning keeps the model's layout: align the counts to start_from.gene_names")
    digest = counts_digest(counts)  # hashed once for the run's fingerprint and the graph's key
    fingerprint = run_fingerprint(counts, layout, model_params, train_params, digest)
    # ``counts`` is this function's own copy (as_counts_matrix): log-normalised in place, then gone.
    data = training_data(
        counts, model_params, train_params, None if start_from is None else GeneScaler.from_dict(start_from.scaler),
        copy=False, digest=digest, positions=positions,
    )
    del counts
    module = seeded_module(data.scaler, layout, model_params, train_params)
    if start_from is not None:
        module.net.load_state_dict(start_from.state_dict)
    precision = resolve_precision(train_params)
    # A fine-tuning run starts from weights the fingerprint does not see: it never resumes.
    result = _train(module, data, layout, train_params, precision, logger, callbacks,
                    fingerprint, resumable=start_from is None)
    bundle = None if result is None else _bundle(*result, data, layout, model_params, train_params, precision)
    if bundle is not None:
        bundle.cell_graph = data.graph
    # Lightning's trainer, the module and the loaders hold each other in reference cycles, and through
    # the loaders the training data (a matrix of the counts' size): free them now, not whenever the
    # cycle collector next runs, so imputation after fit does not run beside them (1.2 GB at 100k cells).
    del data, module, result
    gc.collect()
    return bundle
