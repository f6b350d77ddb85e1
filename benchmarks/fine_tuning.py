"""Does a model trained elsewhere help? Fine-tuning on pbmc68k_reduced against training from scratch.

    python benchmarks/fine_tuning.py [--seeds 3] [--source-cells 2000]

For each mask seed of pbmc68k_reduced (the benchmark's protocol: 10% of the nonzero counts held out,
the model trained on the MCV train split of the rest):

- ``scratch``: ``GapFill`` at the defaults, trained on pbmc68k_reduced alone;
- ``fine-tuned``: ``GapFill`` trained first on the project's simulator (``--source-cells`` cells whose
  genes carry pbmc68k_reduced's gene names, so that the genes align by name: a stand-in for a model
  shipped for a tissue), then ``fit`` again on pbmc68k_reduced, which continues from those weights with
  the source's gene layout and scaler.

Prints, per seed and method, the epochs run (early stopping), the best epoch, the training seconds
and the held-out Pearson, per-gene held-out Pearson and ARI of the evaluation's own code.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from _common import machine_line, parameters, quiet_train
from scgapfill.data.simulate import simulate
from scgapfill.eval import protocol
from scgapfill.eval.benchmark import prepare_dataset
from scgapfill.eval.evaluate import build_evaluation_data, score_method
from scgapfill.model import GapFill
from scgapfill.pipelines.modeling.nodes import compute_gene_layout


def source_model(params: dict, genes: list[str], n_cells: int) -> tuple[GapFill, float]:
    """A model trained on simulated counts whose genes are named like the target's."""
    sim = simulate({**params["input"]["simulation"], "n_cells": n_cells, "n_genes": len(genes), "seed": 1})
    sim.var_names = genes
    sim.layers["counts"] = sim.X.copy()
    train = quiet_train(params)
    start = time.perf_counter()
    model = GapFill(params["model"], train, params["layout"], params["impute"]).fit(sim, layer="counts")
    return model, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--source-cells", type=int, default=2000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    params = parameters()
    processed = prepare_dataset("pbmc68k_reduced", params)
    genes = list(processed.var_names)
    source, source_seconds = source_model(params, genes, args.source_cells)
    print(machine_line(f"target pbmc68k_reduced {processed.n_obs} cells x {processed.n_vars} genes; source: "
                       f"simulation of {args.source_cells} cells, {len(source.history)} epochs in {source_seconds:.1f} s"))
    print("| seed | method | epochs | best epoch | train s | held-out r | per-gene held-out r | ARI after |")
    print("|---|---|---|---|---|---|---|---|")
    train = quiet_train(params)
    for seed in range(args.seeds):
        # The protocol's split (what the masking pipeline makes), this script's seeds for both draws.
        mask, masked, mcv_train, test = protocol.split(processed, params, seed, seed)
        data = build_evaluation_data(processed, mask, mcv_train.layers["counts"], test)
        layout = compute_gene_layout(masked, params["layout"], params["model"])
        for method in ("scratch", "fine-tuned"):
            if method == "scratch":
                model = GapFill(params["model"], train, params["layout"], params["impute"])
                fit = lambda: model.fit(mcv_train, layer="counts", gene_layout=layout)  # noqa: E731
            else:
                model = GapFill.from_bundle(source.bundle, train=train)
                fit = lambda: model.fit(mcv_train, layer="counts")  # noqa: E731
            start = time.perf_counter()
            fit()
            seconds = time.perf_counter() - start
            scores = score_method(data, model.impute_matrix(masked)[0], model.impute_matrix(mcv_train)[0],
                                  params["evaluation"]).metrics
            print(f"| {seed} | {method} | {len(model.history)} | {model.bundle.best_epoch} | {seconds:.1f} | "
                  f"{scores['heldout_pearson']:.4f} | {scores['heldout_gene_pearson_median']:.4f} | "
                  f"{scores.get('ari_after', np.nan):.3f} |", flush=True)


if __name__ == "__main__":
    main()
