"""How much does the neighbour context alone carry? Scores the context channel itself as an imputation.

    python benchmarks/context_probe.py --datasets pbmc68k_reduced simulated

For each (k, diffusion steps, space) the context (mean of the cell's neighbours, the cell itself
excluded, computed from the masked counts; ``log``: mean of the log values, ``counts``: log1p of the
mean normalised count) is scored on the held-out entries of mask seed 0, and, on simulations,
against the truth with the observed counts kept. A U-Net that does not beat these numbers adds
nothing to its own input channel.
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings

import numpy as np
import scipy.sparse as sp

from scgapfill import masks, metrics
from scgapfill.benchmark import prepare_dataset
from scgapfill.evaluate import build_evaluation_data
from scgapfill.normalization import lognorm, size_factors
from scgapfill.train.data import neighbour_context

SETTINGS = [(15, 1), (30, 1), (15, 2), (15, 3), (30, 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["pbmc68k_reduced", "simulated"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spaces", nargs="+", default=["log", "counts"], choices=["log", "counts"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; mask seed {args.seed}\n")
    print("| data set | cells x genes | k | steps | space | held-out Pearson | truth RMSE (zeros filled) |")
    print("|---|---|---|---|---|---|---|")
    for name in args.datasets:
        processed = prepare_dataset(name, {})
        counts = sp.csr_matrix(processed.layers["counts"])
        mask = masks.heldout_mask(counts, 0.1, args.seed)
        masked = masks.apply_mask(counts, mask)
        train, test = masks.mcv_split(masked, 0.9, args.seed)
        data = build_evaluation_data(processed, mask, train, test)
        values = lognorm(masked, size_factors(masked))
        for (k, steps), space in ((setting, space) for setting in SETTINGS for space in args.spaces):
            context = neighbour_context(values, k, 30, 0, steps, space)
            held = metrics.heldout_scores(context, data.heldout_truth, data.rows, data.cols)["heldout_pearson"]
            truth = float("nan")
            if data.truth_counts is not None:
                filled = values.toarray()
                filled[filled == 0] = context[filled == 0]
                truth = metrics.truth_scores(filled, data.truth_counts, data.truth_mean, data.size_factors)["truth_rmse"]
            print(f"| {name} | {counts.shape[0]} x {counts.shape[1]} | {k} | {steps} | {space} | {held:.4f} | {truth:.4f} |",
                  flush=True)


if __name__ == "__main__":
    main()
