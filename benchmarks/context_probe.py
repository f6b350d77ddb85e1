"""How much does the neighbour context alone carry? Scores the context channel itself as an imputation.

    python benchmarks/context_probe.py --datasets pbmc68k_reduced simulated
    python benchmarks/context_probe.py --spaces counts --seeds 3 --sweep   # k x PCs x steps, mean of 3 seeds

For each (k, PCs, diffusion steps, space) the context (mean of the cell's neighbours, the cell itself
excluded, computed from the masked counts; ``log``: mean of the log values, ``counts``: log1p of the
mean normalised count) is scored on the held-out entries of mask seed 0 (or the mean over --seeds),
and, on simulations, against the truth with the observed counts kept. A U-Net that does not beat these numbers adds
nothing to its own input channel.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import scipy.sparse as sp

from _common import machine_line
from scgapfill.data import masks
from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.eval import metrics
from scgapfill.eval.benchmark import prepare_dataset
from scgapfill.eval.evaluate import build_evaluation_data
from scgapfill.graph.cellgraph import neighbour_context

# (k, PCs, steps)
SETTINGS = [(15, 30, 1), (30, 30, 1), (15, 30, 2), (15, 30, 3), (30, 30, 3)]
SWEEP = [(15, 30, 2), (15, 30, 3), (15, 30, 4), (30, 30, 2), (30, 30, 3), (15, 10, 2), (15, 10, 3), (30, 10, 3),
         (15, 50, 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["pbmc68k_reduced", "simulated"])
    parser.add_argument("--seed", type=int, default=0, help="first mask seed")
    parser.add_argument("--seeds", type=int, default=1, help="number of mask seeds, from --seed on; figures are means")
    parser.add_argument("--spaces", nargs="+", default=["log", "counts"], choices=["log", "counts"])
    parser.add_argument("--sweep", action="store_true", help="the wider k x PCs x steps grid")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    seeds = list(range(args.seed, args.seed + args.seeds))
    settings = [(setting, space) for setting in (SWEEP if args.sweep else SETTINGS) for space in args.spaces]
    print(machine_line(f"mask seeds {seeds}") + "\n")
    print("| data set | cells x genes | k | PCs | steps | space | held-out Pearson | truth RMSE (zeros filled) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.datasets:
        processed = prepare_dataset(name, {})
        counts = sp.csr_matrix(processed.layers["counts"])
        scores = {setting: [] for setting in settings}
        for seed in seeds:
            mask = masks.heldout_mask(counts, 0.1, seed)
            masked = masks.apply_mask(counts, mask)
            train, test = masks.mcv_split(masked, 0.9, seed)
            data = build_evaluation_data(processed, mask, train, test)
            values = lognorm(masked, size_factors(masked))
            # Per seed, not per setting: only the context changes from one setting to the next.
            observed = values.toarray()
            truth_values = None
            if data.truth_counts is not None:
                truth_values = sp.csr_matrix(lognorm(data.truth_counts, data.size_factors)).toarray()
            for (k, n_pcs, steps), space in settings:
                context = neighbour_context(values, k, n_pcs, 0, steps, space)
                held = metrics.heldout_scores(context, data.heldout_truth, data.rows, data.cols)["heldout_pearson"]
                truth = float("nan")
                if truth_values is not None:
                    # truth_rmse of metrics.truth_scores, without its false-correlation scan
                    truth = metrics.rmse(np.where(observed == 0, context, observed), truth_values)
                scores[((k, n_pcs, steps), space)].append((held, truth))
        for ((k, n_pcs, steps), space), per_seed in scores.items():
            held, truth = np.mean(per_seed, axis=0)
            print(f"| {name} | {counts.shape[0]} x {counts.shape[1]} | {k} | {n_pcs} | {steps} | {space} | {held:.4f} "
                  f"| {truth:.4f} |", flush=True)


if __name__ == "__main__":
    main()
