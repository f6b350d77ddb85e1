"""Variants of the neighbours' average (item 9 of docs/model.md) on the same trained networks.

    python benchmarks/smoothing_probe.py --datasets pbmc68k_reduced simulated --seeds 3

For each data set and mask seed, trains the default model once (as the benchmark: on the MCV train
split of the masked counts), then fills the zeros with several versions of the average of each
cell's estimate with its neighbours' (weight on the neighbours, k, random-walk steps, and what the
neighbours contribute: their estimates, the default, or their observed counts where they have one)
and scores each with the evaluation's own code on the held-out entries. The network is the same for
every row, so the rows differ only by the average. Prints mean ± sd over seeds per data set, with
the machine and the data size; --out writes the per-seed rows.
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from _common import machine_line, parameters, print_variant_tables, quiet_train
from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.eval import protocol
from scgapfill.eval.baselines import run_baseline
from scgapfill.eval.benchmark import prepare_dataset
from scgapfill.eval.evaluate import build_evaluation_data, score_method
from scgapfill.graph.cellgraph import diffuse, knn_graph, pca_embedding
from scgapfill.infer.imputation import impute_counts
from scgapfill.model import GapFill
from scgapfill.params import ImputeParams
from scgapfill.pipelines.modeling.nodes import compute_gene_layout

COLUMNS = ["heldout_pearson", "ari_after", "ari_before", "truth_rmse", "truth_mean_rmse", "heldout_truth_mean_pearson"]


def variants(bundle, masked: sp.csr_matrix) -> dict[str, np.ndarray]:
    values = sp.csr_matrix(lognorm(masked, size_factors(masked)), dtype=np.float64)
    observed = values.tocoo()
    own = impute_counts(bundle, masked, ImputeParams(output_smoothing=0.0, fill_only_zeros=False)).astype(np.float64)
    kept = own.copy()
    kept[observed.row, observed.col] = observed.data
    _, pca = pca_embedding(values, bundle.model.context_n_pcs, bundle.train.seed)
    embedded = kept if pca is None else pca.transform(kept)

    @functools.cache
    def walk(k: int, steps: int):
        return diffuse(knn_graph(embedded, k), steps)

    def averaged(k: int, steps: int, weight: float, neighbours_give: np.ndarray) -> np.ndarray:
        out = np.log1p((1 - weight) * np.expm1(own) + weight * np.asarray(walk(k, steps) @ np.expm1(neighbours_give)))
        out[observed.row, observed.col] = observed.data
        return out

    rows = {
        "network alone (output_smoothing 0)": kept,
        "default (impute_counts: k 15, 1 step, weight 0.5, their estimates)": impute_counts(
            bundle, masked, ImputeParams(fill_only_zeros=True)),
    }
    for weight in (0.25, 0.75, 1.0):
        rows[f"k 15, 1 step, weight {weight}"] = averaged(15, 1, weight, own)
    for k, steps in ((30, 1), (15, 2), (15, 3), (30, 2)):
        for weight in (0.5, 0.75):
            rows[f"k {k}, {steps} steps, weight {weight}"] = averaged(k, steps, weight, own)
    rows["k 15, 1 step, weight 0.5, their observed counts where counted"] = averaged(15, 1, 0.5, kept)
    rows["MAGIC (reference)"] = run_baseline("magic", masked, seed=0)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["pbmc68k_reduced", "simulated"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=None, help="CSV of the per-seed rows")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    params = parameters()
    records = []
    for dataset in args.datasets:
        processed = prepare_dataset(dataset, params)
        counts = sp.csr_matrix(processed.layers["counts"])
        for seed in range(args.seeds):
            # The protocol's split (what the masking pipeline makes), this script's seeds for both draws.
            mask, masked_data, train, test = protocol.split(processed, params, seed, seed)
            masked = masked_data.layers["counts"]
            data = build_evaluation_data(processed, mask, train.layers["counts"], test)
            layout = compute_gene_layout(masked_data, params.get("layout", {}), params["model"])
            start = time.perf_counter()
            gapfill = GapFill(params["model"], quiet_train(params), params.get("layout"))
            bundle = gapfill.fit(train, gene_layout=layout).bundle
            seconds = time.perf_counter() - start
            for name, estimate in variants(bundle, masked).items():
                scores = score_method(data, estimate, None, params.get("evaluation")).metrics
                records.append({"dataset": dataset, "n_cells": counts.shape[0], "n_genes": counts.shape[1],
                                "seed": seed, "variant": name, "training_seconds": seconds,
                                **{c: scores.get(c, np.nan) for c in COLUMNS}})
    frame = pd.DataFrame(records)
    if args.out:
        frame.to_csv(args.out, index=False)
    print(machine_line(f"mask seeds 0-{args.seeds - 1}, mean ± sd", torch=True) + "\n")
    print_variant_tables(frame, COLUMNS)


if __name__ == "__main__":
    main()
