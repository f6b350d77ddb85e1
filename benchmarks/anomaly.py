"""The anomaly score (``obs["gapfill_anomaly"]``) against Scrublet, on doublets made in silico.

    python benchmarks/anomaly.py --datasets simulated zeisel marrow --seeds 0 1 2 --out runs.csv

For each data set and seed, ``--doublet-fraction`` of the cells are added as doublets: the summed counts
of two cells of different labels (the authors' on Zeisel, the derived clusters on the marrow set, the
simulation's groups); where the data have mitochondrial genes (``qc.mito_prefix``), ``--damaged-fraction`` as damaged
cells too: a cell's mitochondrial molecules kept and a third of the others (a broken cell leaks its
cytoplasmic RNA). The U-Net is fitted on every cell, doublets included, as a user fits it (the
``training`` pipeline's normalisation, highly variable genes and layout; conf/base's parameters and
``--set`` overrides) and imputes them, which writes the score. Scrublet (``sc.pp.scrublet``) runs on the
same counts. Printed: the AUROC for doublets against the unchanged cells of the score, of Scrublet's, and
of the cell's total count alone (a doublet carries about twice the molecules: depth is the trivial detector
a depth-free score must not be); for damaged cells, of the score and of the mitochondrial share (the QC
metric users filter on); the share of each kind flagged; with the machine line.
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

SHOWN = ["auroc_gapfill", "auroc_scrublet", "auroc_total_counts", "flagged_doublets", "flagged_singlets",
         "damaged_auroc_gapfill", "damaged_auroc_pct_mito", "flagged_damaged", "seconds_gapfill", "seconds_scrublet"]
COLUMNS = ["dataset", "seed", "n_cells", "n_doublets", "n_damaged", *SHOWN, "settings"]


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


def with_damaged(counts: sp.csr_matrix, mito: np.ndarray, fraction: float,
                 seed: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """``counts`` with ``fraction`` x cells damaged cells appended, as a broken cell looks: a third of a cell's
    other molecules kept (leaked), every mitochondrial one (``mito``: QC's ``var["mt"]``) kept. None without
    mitochondrial genes."""
    n_damaged = int(round(fraction * counts.shape[0])) if mito.any() else 0
    rng = np.random.default_rng(seed + 1)
    source = counts[rng.choice(counts.shape[0], n_damaged, replace=False)].toarray()
    damaged = np.where(mito, source, rng.binomial(source.astype(np.int64), 1 / 3))
    is_damaged = np.r_[np.zeros(counts.shape[0], bool), np.ones(n_damaged, bool)]
    return sp.csr_matrix(sp.vstack([counts, sp.csr_matrix(damaged, dtype=counts.dtype)])), is_damaged


def _auroc(positive: np.ndarray, negative: np.ndarray, score: np.ndarray) -> float:
    """AUROC of ``score`` for the ``positive`` cells against the ``negative`` ones (NaN without positives)."""
    from sklearn.metrics import roc_auc_score

    if not positive.any():
        return float("nan")
    keep = positive | negative
    return float(roc_auc_score(positive[keep], score[keep]))


def run_one(name: str, seed: int, params: dict, fraction: float, damaged_fraction: float, settings: str) -> dict:
    import scanpy as sc

    from scgapfill.data import preprocessing
    from scgapfill.eval.benchmark import prepare_dataset
    from scgapfill.infer.anomaly import FLAG_KEY, SCORE_KEY
    from scgapfill.model import GapFill, compute_gene_layout

    base = prepare_dataset(name, {**params, "hvg": {"n_top_genes": 10**9}})
    labels = base.obs[base.uns.get("label_key") or "group"].astype(str).to_numpy()
    counts, is_doublet = with_doublets(sp.csr_matrix(base.layers["counts"]), labels, fraction, seed)
    mito = base.var["mt"].to_numpy(dtype=bool)  # QC's mitochondrial genes (qc.mito_prefix)
    counts, is_damaged = with_damaged(counts, mito, damaged_fraction, seed)
    is_doublet = np.r_[is_doublet, np.zeros(is_damaged.sum(), bool)]
    singlet = ~is_doublet & ~is_damaged
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
    # A fixed threshold: the automatic one needs scikit-image, and only the scores are compared. Exact
    # neighbours: scanpy 1.11's approximate path fails on scipy's sparse arrays above a few thousand cells.
    sc.pp.scrublet(scrub, threshold=0.25, random_state=seed, use_approx_neighbors=False)
    seconds_scrublet = time.perf_counter() - start
    score, flag = scored[SCORE_KEY].to_numpy(), scored[FLAG_KEY].to_numpy()
    depth = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    mito_share = np.asarray(counts[:, mito].sum(axis=1)).ravel() / depth
    return {
        "dataset": name, "seed": seed, "n_cells": int(adata.n_obs), "n_doublets": int(is_doublet.sum()),
        "n_damaged": int(is_damaged.sum()),
        "auroc_gapfill": _auroc(is_doublet, singlet, score),
        "auroc_scrublet": _auroc(is_doublet, singlet, scrub.obs["doublet_score"].to_numpy()),
        "auroc_total_counts": _auroc(is_doublet, singlet, depth),
        "flagged_doublets": float(flag[is_doublet].mean()), "flagged_singlets": float(flag[singlet].mean()),
        "damaged_auroc_gapfill": _auroc(is_damaged, singlet, score),
        "damaged_auroc_pct_mito": _auroc(is_damaged, singlet, mito_share),
        "flagged_damaged": float(flag[is_damaged].mean()) if is_damaged.any() else float("nan"),
        "seconds_gapfill": seconds_gapfill, "seconds_scrublet": seconds_scrublet, "settings": settings,
    }


def summary(rows: pd.DataFrame) -> str:
    lines = []
    for name, group in rows.groupby("dataset", sort=False):
        cells = (f"{int(group['n_cells'].iloc[0]):,} ({int(group['n_doublets'].iloc[0])} doublets, "
                 f"{int(group['n_damaged'].iloc[0])} damaged)")
        lines.append([name, len(group), cells, *[mean_sd(group[m], 0 if m.startswith("seconds") else 3)
                                                 for m in SHOWN]])
    return table(["data set", "seeds", "cells", *SHOWN], lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["simulated", "zeisel", "marrow"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--doublet-fraction", type=float, default=0.08)
    parser.add_argument("--damaged-fraction", type=float, default=0.04,
                        help="damaged cells added where the data have mitochondrial genes (qc.mito_prefix)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=None, help="CSV of the rows, rewritten as each lands")
    args = parser.parse_args(argv)
    params = parameters(args.set)
    print(machine_line(torch=True), flush=True)
    rows = []
    for name in args.datasets:
        for seed in args.seeds:
            rows.append(run_one(name, seed, params, args.doublet_fraction, args.damaged_fraction, " ".join(args.set)))
            print(json.dumps(rows[-1]), flush=True)
            if args.out is not None:
                pd.DataFrame(rows, columns=COLUMNS).to_csv(args.out, index=False)
    print(summary(pd.DataFrame(rows, columns=COLUMNS)))


if __name__ == "__main__":
    main()
