"""The anomaly score (``obs["gapfill_anomaly"]``) against Scrublet, on doublets made in silico.

    python benchmarks/anomaly.py --datasets simulated zeisel marrow --seeds 0 1 2 --out runs.csv

For each data set and seed, ``--doublet-fraction`` of the cells are added as doublets: the summed counts
of two cells of different labels (the authors' on Zeisel, the derived clusters on the marrow set, the
simulation's groups). The U-Net is fitted on every cell, doublets included, as a user fits it (the
``training`` pipeline's normalisation, highly variable genes and layout; conf/base's parameters and
``--set`` overrides) and imputes them, which writes the score. Scrublet (``sc.pp.scrublet``) runs on the
same counts. Printed: the AUROC for doublet against not of the score, of Scrublet's, and of the cell's
total count alone (a doublet carries about twice the molecules: depth is the trivial detector a
depth-free score must not be), the share of doublets and of singlets flagged, with the machine line.
Real data sets need ``python -m scgapfill.data.real_data`` once.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from _common import machine_line, mean_sd, parameters, quiet_train, table

COLUMNS = ["dataset", "seed", "n_cells", "n_doublets", "auroc_gapfill", "auroc_scrublet", "auroc_total_counts",
           "flagged_doublets", "flagged_singlets", "seconds_gapfill", "seconds_scrublet", "settings"]
SHOWN = ["auroc_gapfill", "auroc_scrublet", "auroc_total_counts", "flagged_doublets", "flagged_singlets",
         "seconds_gapfill", "seconds_scrublet"]


def with_doublets(counts: sp.csr_matrix, labels: np.ndarray, fraction: float,
                  seed: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """``counts`` with ``fraction`` x cells doublets appended (two cells of different labels summed)."""
    rng = np.random.default_rng(seed)
    n_doublets = int(round(fraction * counts.shape[0]))
    first, second = rng.integers(0, counts.shape[0], size=(2, 4 * n_doublets))
    different = labels[first] != labels[second]
    first, second = first[different][:n_doublets], second[different][:n_doublets]
    if first.size < n_doublets:
        raise ValueError("too few cells of different labels to make the doublets")
    is_doublet = np.r_[np.zeros(counts.shape[0], bool), np.ones(n_doublets, bool)]
    return sp.csr_matrix(sp.vstack([counts, counts[first] + counts[second]])), is_doublet


def run_one(name: str, seed: int, params: dict, fraction: float, settings: str) -> dict:
    import scanpy as sc
    from sklearn.metrics import roc_auc_score

    from scgapfill.data import preprocessing
    from scgapfill.eval.benchmark import prepare_dataset
    from scgapfill.infer.anomaly import FLAG_KEY, SCORE_KEY
    from scgapfill.model import GapFill, compute_gene_layout

    base = prepare_dataset(name, {**params, "hvg": {"n_top_genes": 10**9}})
    labels = base.obs[base.uns.get("label_key") or "group"].astype(str).to_numpy()
    counts, is_doublet = with_doublets(sp.csr_matrix(base.layers["counts"]), labels, fraction, seed)
    adata = ad.AnnData(X=counts.astype(np.float32))
    adata.var_names = list(base.var_names)
    adata.obs_names = [f"cell{i}" for i in range(adata.n_obs)]

    start = time.perf_counter()
    modelled = preprocessing.select_genes(preprocessing.normalize(adata.copy(), params["normalize"]), params["hvg"])
    layout = compute_gene_layout(modelled.X, list(modelled.var_names), params["layout"], params["model"]["depth"])
    gapfill = GapFill(params["model"], quiet_train(params, seed=seed), params["layout"], params["impute"])
    gapfill.fit(modelled, layer="counts", gene_layout=layout)
    scored = gapfill.impute(adata, layer=None, inplace=False).obs
    seconds_gapfill = time.perf_counter() - start

    start = time.perf_counter()
    scrub = adata.copy()
    # A fixed threshold: the automatic one needs scikit-image, and only the scores are compared.
    sc.pp.scrublet(scrub, threshold=0.25, random_state=seed)
    seconds_scrublet = time.perf_counter() - start
    score, flag = scored[SCORE_KEY].to_numpy(), scored[FLAG_KEY].to_numpy()
    return {
        "dataset": name, "seed": seed, "n_cells": int(adata.n_obs), "n_doublets": int(is_doublet.sum()),
        "auroc_gapfill": float(roc_auc_score(is_doublet, score)),
        "auroc_scrublet": float(roc_auc_score(is_doublet, scrub.obs["doublet_score"])),
        "auroc_total_counts": float(roc_auc_score(is_doublet, np.asarray(counts.sum(axis=1)).ravel())),
        "flagged_doublets": float(flag[is_doublet].mean()), "flagged_singlets": float(flag[~is_doublet].mean()),
        "seconds_gapfill": seconds_gapfill, "seconds_scrublet": seconds_scrublet, "settings": settings,
    }


def summary(rows: pd.DataFrame) -> str:
    lines = []
    for name, group in rows.groupby("dataset", sort=False):
        cells = f"{int(group['n_cells'].iloc[0]):,} ({int(group['n_doublets'].iloc[0])} doublets)"
        lines.append([name, len(group), cells, *[mean_sd(group[m], 0 if m.startswith("seconds") else 3)
                                                 for m in SHOWN]])
    return table(["data set", "seeds", "cells", *SHOWN], lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["simulated", "zeisel", "marrow"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--doublet-fraction", type=float, default=0.08)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=None, help="CSV of the rows, rewritten as each lands")
    args = parser.parse_args(argv)
    params = parameters(args.set)
    print(machine_line(torch=True), flush=True)
    rows = []
    for name in args.datasets:
        for seed in args.seeds:
            rows.append(run_one(name, seed, params, args.doublet_fraction, " ".join(args.set)))
            print(json.dumps(rows[-1]), flush=True)
            if args.out is not None:
                pd.DataFrame(rows, columns=COLUMNS).to_csv(args.out, index=False)
    print(summary(pd.DataFrame(rows, columns=COLUMNS)))


if __name__ == "__main__":
    main()
