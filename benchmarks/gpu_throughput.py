"""Training and imputation throughput of the U-Net on one device: the short script for a GPU machine.

    python benchmarks/gpu_throughput.py --cells 100000 --genes 2000 --batch-sizes 512 2048 --workers 8

Simulates ``--cells`` cells (sparse, the project's simulator), lays the genes out, builds the training
data and its neighbour context once, then for each batch size and each variant (channels-last or
contiguous, ``torch.compile`` or not) trains ``--steps`` optimiser steps through the library's own
Lightning path (the precision is ``train.precision``'s default: bf16-mixed on a GPU, 32-true on the
CPU) and prints one table:

- training cells/s: the median epoch, its validation batches included (the first epoch carries the
  warm-up and compilation, and is left out where there are others);
- loader cells/s: the same training loader iterated alone, batches moved to the device: where it is
  not well above the training rate, the loader (densifying sparse rows, the context rows), not the
  network, sets the pace;
- imputation cells/s, at the first batch size only: the network's pass over every cell (no output
  smoothing; the imputation builds its own network from the weights, never compiled), the context
  graph of the imputed cells included (its cost is about the preparation's "training data" line);
- peak device memory and the best validation loss (a check that the variants train alike).

The machine, the data size and the seconds of each preparation step come first. Nothing here is a
default of the project: it measures what a larger batch, compilation and the layout buy on the
machine at hand.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
from _common import machine_line  # noqa: E402

VARIANTS = {
    "channels-last": {"channels_last": True, "compile": False},
    "channels-last + compile": {"channels_last": True, "compile": True},
    "contiguous": {"channels_last": False, "compile": False},
}


def loader_cells_per_s(loader, device, n_batches: int) -> float:
    """Cells/s of the loader alone, each batch's tensors moved to ``device`` (waited for)."""
    import torch

    start, cells = time.perf_counter(), 0
    for index, batch in enumerate(loader):
        if index == n_batches:
            break
        moved = {key: tensor.to(device, non_blocking=True) for key, tensor in batch.items()}
        cells += int(moved["values"].shape[0])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return cells / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps per variant, in 3 epochs")
    parser.add_argument("--workers", type=int, default=8, help="train.num_workers of the loaders")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--impute-batch-size", type=int, default=4096)
    args = parser.parse_args(argv)

    import torch

    from scgapfill.data.layout import compute_layout
    from scgapfill.data.normalization import lognorm, size_factors
    from scgapfill.params import ModelParams, TrainParams
    from scgapfill.data.simulate import simulate
    from scgapfill.train.data import as_counts_matrix
    from scgapfill.train.fit import _bundle, _loaders, _train, seeded_module, training_data
    from scgapfill.train.trainer import resolve_precision
    from train_speed import imputation_cells_per_s

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    adata = simulate(n_cells=args.cells, n_genes=args.genes, truth=False)
    counts, genes = as_counts_matrix(adata.X, "simulation"), [str(g) for g in adata.var_names]
    del adata
    seconds["simulation"] = time.perf_counter() - start
    model = ModelParams()
    start = time.perf_counter()
    layout = compute_layout(lognorm(counts, size_factors(counts)), genes, "correlation", divisor=2**model.depth)
    seconds["layout"] = time.perf_counter() - start
    # One validation set of two of the largest batches for every run: the data are built once.
    base = TrainParams(max_val_cells=2 * max(args.batch_sizes), num_workers=args.workers, enable_progress_bar=False,
                       patience=10, resume="never", checkpoint_dir=tempfile.mkdtemp(prefix="gpu_throughput_"))
    start = time.perf_counter()
    data = training_data(counts, model, base)
    seconds["training data (scaling, PCA, kNN, walk)"] = time.perf_counter() - start
    precision = resolve_precision(base)

    rows = []
    steps_per_epoch = max(args.steps // 3, 1)
    for batch_size in args.batch_sizes:
        train = base.model_copy(update={"batch_size": batch_size, "cells_per_epoch": batch_size * steps_per_epoch,
                                        "max_steps": 3 * steps_per_epoch, "max_epochs": 3})
        loader, _ = _loaders(data, len(genes), train)
        loader_rate = loader_cells_per_s(loader, device, steps_per_epoch)
        for name in args.variants:
            variant = VARIANTS[name]
            variant_model = model.model_copy(update={"channels_last": variant["channels_last"]})
            module = seeded_module(data.scaler, layout, variant_model, train)
            if variant["compile"]:
                module.net.compile()  # in place: the state dict keeps its names
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            best, history, wall = _train(module, data, layout, train, precision, None, None,
                                         fingerprint=f"{name}-{batch_size}", resumable=False)
            bundle = _bundle(best, history, wall, data, layout, variant_model, train, precision)
            epoch_seconds = float(np.median(bundle.info["epoch_seconds"][1:] or bundle.info["epoch_seconds"]))
            impute_rate = float("nan")
            if batch_size == args.batch_sizes[0]:  # the imputation does not depend on the training batch
                impute_rate = imputation_cells_per_s(bundle, counts, repeats=1, batch_size=args.impute_batch_size)
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
            rows.append((name, batch_size, precision, train.cells_per_epoch / epoch_seconds, loader_rate,
                         impute_rate, peak, bundle.info["best_val_loss"]))

    name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu"
    print(machine_line(f"measured on device {device.type} ({name})", torch=True))
    print(f"data: simulation, {counts.shape[0]} cells x {counts.shape[1]} genes, grid "
          + "x".join(map(str, layout["shape"])) + f"; {args.steps} steps per variant, {args.workers} loader workers")
    print("preparation: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + "\n")
    print("| variant | batch | precision | training cells/s | loader cells/s | imputation cells/s (graph included) "
          "| peak device GiB | best val_loss |\n|---|---|---|---|---|---|---|---|")
    for variant, batch, precision, train_rate, loader_rate, impute_rate, peak, val_loss in rows:
        print(f"| {variant} | {batch} | {precision} | {train_rate:.0f} | {loader_rate:.0f} | {impute_rate:.0f} "
              f"| {peak:.1f} | {val_loss:.5f} |")


if __name__ == "__main__":
    main()
