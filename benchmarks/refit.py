"""What ``final.refit`` costs and gains: the deliverable from the evaluated model, or from one trained again
on every processed count.

    python benchmarks/refit.py [--seeds 3]

On the project's simulation (which keeps the truth), per mask seed, as ``kedro run --pipeline=training``
runs it: the model is trained on the MCV train split of the masked counts (81% of the molecules), then the
deliverable is made from every processed count by ``impute_all`` with ``final.refit`` false and true. Each
deliverable's imputed layer is scored against the truth as compositions (``metrics.truth_scores``: every
entry, the whole data set, nothing held out). Prints the seconds of each deliverable and the scores.
"""

from __future__ import annotations

import argparse
import time
import warnings

from _common import machine_line, parameters, quiet_train
from scgapfill.eval import protocol
from scgapfill.eval.benchmark import prepare_dataset
from scgapfill.eval.metrics import truth_scores
from scgapfill.model import GapFill
from scgapfill.pipelines.modeling import nodes as modeling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    params = parameters()
    processed = prepare_dataset("simulated", params)
    print(machine_line(f"simulated {processed.n_obs} cells x {processed.n_vars} genes"))
    print("| seed | final.refit | deliverable s | truth RMSE | truth-mean RMSE | truth-mean Pearson |")
    print("|---|---|---|---|---|---|")
    normalize, train = params["normalize"], quiet_train(params)
    for seed in range(args.seeds):
        # The protocol's split (what the masking pipeline makes), this script's seeds for both draws.
        mask, masked, mcv_train, _ = protocol.split(processed, params, seed, seed)
        layout = modeling.compute_gene_layout(masked, params["layout"], params["model"])
        model = GapFill(params["model"], train, params["layout"], params["impute"])
        model.fit(mcv_train, layer="counts", gene_layout=layout)
        for refit in (False, True):
            start = time.perf_counter()
            out = modeling.impute_all(model, processed, params["impute"], {"refit": refit}, train,
                                      params["layout"], normalize)
            seconds = time.perf_counter() - start
            scores = truth_scores(out.layers["imputed"], processed.layers["true_counts"],
                                  processed.layers["true_mean"])
            print(f"| {seed} | {refit} | {seconds:.1f} | {scores['truth_rmse']:.4f} | "
                  f"{scores['truth_mean_rmse']:.4f} | {scores['truth_mean_pearson']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
