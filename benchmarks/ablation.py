"""Ablations of the U-Net: each named configuration changes a few parameters of the defaults.

    python benchmarks/ablation.py --configs default layout_given layout_random --seeds 3

prints one table per data set (mean ± sd over mask seeds) with the machine, the data size and the
seconds per configuration, and writes the raw rows to --out (CSV). The defaults in
conf/base/parameters_*.yml are the base; a configuration overrides nested keys.
"""

from __future__ import annotations

import argparse
import logging
import time

import pandas as pd

from _common import machine_line, merged, parameters, quiet_train
from scgapfill.eval.benchmark import method_runners, run_benchmark, summarise, unet_method

# 2,000 optimiser steps whatever the data's size, the learning rate down to 0 along a half cosine
COSINE_2000 = {"cells_per_epoch": 4096, "max_val_cells": 2048, "max_steps": 2000, "lr_schedule": "cosine"}

# name -> overrides of the base parameters (nested dicts)
CONFIGS: dict[str, dict] = {
    "default": {},
    # gene layout (default: correlation)
    "layout_given": {"layout": {"strategy": "given"}},
    "layout_random": {"layout": {"strategy": "random"}},
    "layout_spacing_2": {"layout": {"spacing": 2.0}},
    # neighbour context (default: on, 2 diffusion steps)
    "context_off": {"model": {"context_channel": False}},
    "context_steps1": {"model": {"context_steps": 1}},
    "context_steps3": {"model": {"context_steps": 3}},
    "context_residual": {"model": {"context_residual": True}},
    "context_counts": {"model": {"context_space": "counts"}},
    "context_log": {"model": {"context_space": "log"}},
    "context_10pcs_3steps": {"model": {"context_n_pcs": 10, "context_steps": 3}},
    "smooth_05": {"impute": {"output_smoothing": 0.5}},
    "smooth_05_imputed": {"impute": {"output_smoothing": 0.5, "smoothing_neighbours": "imputed"}},
    "ema_0998_smooth_05": {"impute": {"output_smoothing": 0.5}, "train": {"ema_decay": 0.998}},
    # training masks (default: uniform)
    "mask_dropout": {"train": {"training_mask": {"mode": "dropout"}}},
    "mask_rate_025": {"train": {"training_mask": {"min_rate": 0.05, "max_rate": 0.25}}},
    # loss terms (default: zero-inflated Poisson alone); every row names all the likelihood terms
    "loss_mse": {"train": {"loss": {"alpha": 1.0, "poisson": 0.0, "zip": 0.0}}},
    "loss_mse_poisson": {"train": {"loss": {"alpha": 1.0, "poisson": 1.0, "zip": 0.0}}},
    "loss_poisson": {"train": {"loss": {"poisson": 1.0, "zip": 0.0}}},
    "loss_poisson_tv": {"train": {"loss": {"gamma": 0.05, "poisson": 1.0, "zip": 0.0}}},
    "loss_poisson_mae": {"train": {"loss": {"beta": 0.5, "poisson": 1.0, "zip": 0.0}}},
    "loss_nb": {"train": {"loss": {"poisson": 0.0, "nb": 1.0, "zip": 0.0}}},
    "loss_zip": {"train": {"loss": {"poisson": 0.0, "zip": 1.0}}},
    # weight averaging (default: off)
    "ema_099": {"train": {"ema_decay": 0.99}},
    "ema_0995": {"train": {"ema_decay": 0.995}},
    "ema_0998": {"train": {"ema_decay": 0.998}},
    # training budget (default: every training cell each epoch, patience 10 epochs)
    "budget_1024": {"train": {"cells_per_epoch": 1024}},
    "budget_2048": {"train": {"cells_per_epoch": 2048}},
    "budget_1024_steps_2000": {"train": {"cells_per_epoch": 1024, "max_steps": 2000}},
    "steps_2000_cosine": {"train": COSINE_2000},
    # the grid and the context on the short cosine budget (real-data ablations)
    "steps_2000_cosine_spacing_2": {"train": COSINE_2000, "layout": {"spacing": 2.0}},
    "steps_2000_cosine_context_steps3": {"train": COSINE_2000, "model": {"context_steps": 3}},
    # a narrower network on the same budget (the scale issue; docs/performance.md, "A narrower network")
    "steps_2000_cosine_base_channels_8": {"train": COSINE_2000, "model": {"base_channels": 8}},
    # output (default: observed counts kept, zeros filled)
    "fill_all": {"impute": {"fill_only_zeros": False}},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["default"], choices=sorted(CONFIGS))
    parser.add_argument("--datasets", nargs="+", default=["pbmc68k_reduced", "simulated"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="ablation_runs.csv")
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every config: train.max_epochs=5")
    parser.add_argument("--baselines", nargs="*", default=[],
                        help="baselines run on the same masks in the same process, for the time ratio: magic alra knn")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    base = parameters(args.set)
    base["train"] = quiet_train(base)
    base["benchmark"] = {"datasets": args.datasets, "methods": [], "n_seeds": args.seeds}
    methods = {name: unet_method(merged(base, CONFIGS[name])) for name in args.configs}
    methods.update(method_runners({**base, "benchmark": {**base["benchmark"], "methods": args.baselines}}))

    done: list[dict] = []

    def report(row: dict) -> None:
        print(f"  {row['dataset']:>16} {row['method']:>18} seed {row['seed']}: "
              f"held-out r {row['heldout_pearson']:.4f} truth rmse {row.get('truth_rmse', float('nan')):.4f} "
              f"ARI {row.get('ari_after', float('nan')):.3f} ({row['seconds']:.0f} s)", flush=True)
        # Rows so far on disk after each one: a long run stopped part-way keeps its finished seeds.
        done.append(row)
        pd.DataFrame(done).to_csv(args.out, index=False)

    start = time.perf_counter()
    runs = run_benchmark(base, methods=methods, on_result=report)
    _, markdown = summarise(runs)
    print("\n" + machine_line(torch=True))
    print(f"total {time.perf_counter() - start:.0f} s; rows in {args.out}\n")
    print(markdown)


if __name__ == "__main__":
    main()
