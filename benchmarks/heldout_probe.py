"""Where does the U-Net's held-out Pearson stand against its own context and against what is attainable?

    python benchmarks/heldout_probe.py --dataset simulated --seed 0 --set train.loss.zip=0 train.loss.nb=1

Trains the default model (plus the --set overrides) on one data set and mask seed, then scores on
the held-out entries: the U-Net, the same network with other weights of impute.output_smoothing
(its estimate averaged with its neighbours'), its neighbour context alone, blends of the two, MAGIC, the
U-Net's rate read as E[log value] and as E[log value | count > 0] under a Poisson, and, on
simulations, the oracle: the simulator's noise-free mean normalised like the data. The last two
are not imputations (the first needs to know the entry is nonzero, the second the truth); they
bound what the held-out Pearson can reward. On simulations a second column scores every estimate
against the noise-free mean at the same entries: how good a denoiser it is there.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.stats import pearsonr, poisson

from _common import machine_line, parameters, quiet_train
from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.eval import protocol
from scgapfill.eval.baselines import run_baseline
from scgapfill.eval.benchmark import prepare_dataset
from scgapfill.eval.evaluate import build_evaluation_data
from scgapfill.graph.cellgraph import neighbour_context
from scgapfill.model import GapFill
from scgapfill.params import parse
from scgapfill.pipelines.modeling.nodes import compute_gene_layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="simulated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="parameter overrides: model.context_steps=3")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    params = parameters(args.set)
    processed = prepare_dataset(args.dataset, params)
    counts = sp.csr_matrix(processed.layers["counts"])
    # The protocol's split (what the masking pipeline makes), this script's seeds for both draws.
    mask, masked_data, train_data, test = protocol.split(processed, params, args.seed, args.seed)
    masked = masked_data.layers["counts"]
    data = build_evaluation_data(processed, mask, train_data.layers["counts"], test)
    sf = size_factors(masked)
    values = lognorm(masked, sf)
    model = parse("model", params["model"])
    impute = parse("impute", {**params.get("impute", {}), "fill_only_zeros": True})
    layout = compute_gene_layout(masked_data, params.get("layout", {}), params["model"])
    start = time.perf_counter()
    gapfill = GapFill(model, quiet_train(params), params.get("layout"), impute)
    gapfill.fit(train_data, gene_layout=layout)  # as the benchmark: the MCV train split
    seconds = time.perf_counter() - start
    imputed = gapfill.impute_matrix(masked_data)[0]
    rows, cols, truth = data.rows, data.cols, data.heldout_truth

    oracle = None
    if data.truth_mean is not None:
        truth_mean = data.truth_mean.toarray() if sp.issparse(data.truth_mean) else np.asarray(data.truth_mean)
        oracle = np.log1p(truth_mean[rows, cols] / sf[rows] * 1e4)

    def r(pred, target) -> str:
        return f"{pearsonr(np.asarray(pred, dtype=np.float64).ravel(), target)[0]:.4f}"

    unet = imputed[rows, cols]
    context = neighbour_context(values, model.context_k, model.context_n_pcs, 0, model.context_steps,
                                model.context_space)[rows, cols]
    magic = run_baseline("magic", masked, seed=0)[rows, cols]
    rate = np.expm1(unet) * sf[rows] / 1e4  # expected count of each held-out entry
    x = np.arange(0, 400)[:, None]
    pmf = poisson.pmf(x, rate[None, :])
    log_value = np.log1p(x * 1e4 / sf[rows][None, :])
    def smoothed(weight: float) -> np.ndarray:
        at = GapFill.from_bundle(gapfill.bundle, impute=impute.model_copy(update={"output_smoothing": weight}))
        return at.impute_matrix(masked_data)[0][rows, cols]

    estimates = [
        (f"U-Net (output_smoothing {impute.output_smoothing})", unet),
        *[(f"U-Net, output_smoothing {w}", smoothed(w)) for w in (0.0, 0.25, 0.5, 0.75, 1.0)
          if w != impute.output_smoothing],
        ("its context alone", context),
        *[(f"blend {w:.2f} U-Net + {1 - w:.2f} context", w * unet + (1 - w) * context) for w in (0.25, 0.5, 0.75)],
        ("MAGIC", magic),
        ("E[log value] of the U-Net's Poisson", (pmf * log_value).sum(0)),
        ("E[log value | count > 0] (not an imputation)",
         (pmf[1:] * log_value[1:]).sum(0) / np.maximum(pmf[1:].sum(0), 1e-300)),
    ]
    if oracle is not None:
        estimates.append(("oracle: noise-free mean (not an imputation)", oracle))
    print(machine_line(f"{args.dataset} {counts.shape[0]} x {counts.shape[1]}, mask seed {args.seed}, "
                       f"overrides {args.set or 'none'}; training {seconds:.0f} s") + "\n")
    if oracle is None:
        print("| held-out Pearson of | value |\n|---|---|")
        for name, estimate in estimates:
            print(f"| {name} | {r(estimate, truth)} |")
    else:
        # Second column: how well each estimate recovers the noise-free mean at the same entries,
        # i.e. whether a held-out loss is a worse denoiser or a score that rewards something else.
        print("| estimate | held-out Pearson (vs held-out counts) | Pearson vs noise-free mean, same entries |\n|---|---|---|")
        for name, estimate in estimates:
            print(f"| {name} | {r(estimate, truth)} | {r(estimate, oracle)} |")


if __name__ == "__main__":
    main()
