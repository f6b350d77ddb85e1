"""Settings of the output (``impute.*``) compared on the same trained networks.

    python benchmarks/output_probe.py --datasets pbmc8k choroid_plexus --seeds 3 \
        --set train.cells_per_epoch=1024 --out output_probe_runs.csv

For each data set and mask seed, trains the U-Net once as the benchmark does (on the MCV train split
of the masked counts), then imputes the masked counts and the MCV split with each output variant
(neighbour averaging weight, filling every entry or only the zeros, composition or observed-library
scale) and scores them with the evaluation's own code, MAGIC on the same masks beside them. The
network is the same for every row of a seed, so rows differ only by the output setting. Prints
mean ± sd over seeds per data set with the machine and the data size.

One row is not an ``impute.*`` setting: "nonzero-conditional" turns the network's levels (the
observed-library output) into the value a nonzero count would take,
``E[log1p(1e4 c / L) | c > 0]`` with ``c ~ Poisson(level * L / 1e4)``: the quantity a held-out
entry (always a nonzero count) measures. It is a probe of the held-out scores, not an output to
use: beside the ``gene_depth`` baseline (the same quantity from one share per gene) and MAGIC's
output read the same way, it shows how much of a held-out score is the cell-specific estimate.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from _common import machine_line, parameters, print_variant_tables, quiet_train
from scgapfill.eval import protocol
from scgapfill.eval.baselines.simple import zeros_as_nonzero_draws
from scgapfill.eval.benchmark import method_runners, prepare_dataset
from scgapfill.eval.evaluate import score_method
from scgapfill.model import GapFill
from scgapfill.params import ImputeParams
from scgapfill.pipelines.evaluation import nodes as evaluation_nodes
from scgapfill.pipelines.modeling.nodes import compute_gene_layout

COLUMNS = ["heldout_pearson", "heldout_gene_pearson_median", "heldout_gene_pearson_given_depth", "mcv_mse",
           "ari_before", "ari_after", "truth_rmse", "truth_mean_rmse"]
# name -> changes to the impute defaults
VARIANTS: dict[str, dict] = {
    "default": {},
    "output_smoothing 0": {"output_smoothing": 0.0},
    "output_smoothing 0.25": {"output_smoothing": 0.25},
    "output_smoothing 0.75": {"output_smoothing": 0.75},
    "output_smoothing 1": {"output_smoothing": 1.0},
    "fill_only_zeros false": {"fill_only_zeros": False},
    "scale observed_library": {"scale": "observed_library"},
}

NONZERO_CONDITIONAL = "nonzero-conditional (probe)"


def nonzero_conditional(observed_library_output: np.ndarray, counts: sp.spmatrix) -> np.ndarray:
    """Each zero of ``counts`` replaced by the expected lognorm of a nonzero count at the network's level."""
    out = np.array(observed_library_output, dtype=np.float64)
    return zeros_as_nonzero_draws(out, counts, np.expm1(out) / 1e4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["pbmc68k_reduced", "simulated"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], help="overrides of the defaults: train.cells_per_epoch=1024")
    parser.add_argument("--out", default=None, help="CSV of the per-seed rows")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="output variants to score (default: all); the probes and references always run")
    args = parser.parse_args()
    params = parameters(args.set)
    evaluation = params.get("evaluation", {})
    references = method_runners({**params, "benchmark": {"methods": ["magic", "gene_depth"]}})
    records = []
    for dataset in args.datasets:
        processed = prepare_dataset(dataset, params)
        for seed in range(args.seeds):
            # The protocol's split (what the masking pipeline makes), this script's seeds for both draws.
            mask, masked, train, test = protocol.split(processed, params, seed, seed)
            data = evaluation_nodes.prepare_evaluation(processed, mask, train, test, evaluation)
            layout = compute_gene_layout(masked, params.get("layout", {}), params["model"])
            start = time.perf_counter()
            gapfill = GapFill(params["model"], quiet_train(params), params.get("layout"))
            gapfill.fit(train, layer="counts", gene_layout=layout)
            seconds = time.perf_counter() - start
            outputs = {}
            for name in dict.fromkeys([*args.variants, "scale observed_library"]):  # the probe reads the latter
                change = VARIANTS[name]
                gapfill.impute_params = ImputeParams(**{**params.get("impute", {}), **change})
                outputs[name] = (gapfill.impute_matrix(masked)[0], gapfill.impute_matrix(train)[0])
            levels = outputs["scale observed_library"]
            outputs[NONZERO_CONDITIONAL] = (nonzero_conditional(levels[0], masked.layers["counts"]),
                                            nonzero_conditional(levels[1], train.layers["counts"]))
            outputs["MAGIC (reference)"] = references["magic"](masked, train)
            # The same reading of MAGIC's output as levels, so the two are compared on one estimand.
            outputs["MAGIC nonzero-conditional (probe)"] = tuple(
                nonzero_conditional(np.maximum(out, 0), part.layers["counts"])
                for out, part in zip(outputs["MAGIC (reference)"], (masked, train)))
            outputs["gene_depth (reference)"] = references["gene_depth"](masked, train)
            for name, (imputed, denoised) in outputs.items():
                scores = score_method(data, imputed, denoised, evaluation).metrics
                records.append({"dataset": dataset, "n_cells": processed.n_obs, "n_genes": processed.n_vars,
                                "seed": seed, "variant": name, "training_seconds": seconds,
                                **{c: scores.get(c, np.nan) for c in COLUMNS}})
                print(f"  {dataset} seed {seed} {name}: held-out r {scores['heldout_pearson']:.4f}", flush=True)
            if args.out:
                pd.DataFrame(records).to_csv(args.out, index=False)
    frame = pd.DataFrame(records)
    print("\n" + machine_line(f"mask seeds 0-{args.seeds - 1}, mean ± sd; overrides: {' '.join(args.set) or 'none'}")
          + "\n")
    print_variant_tables(frame, COLUMNS)


if __name__ == "__main__":
    main()
