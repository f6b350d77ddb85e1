"""One-off probe behind "Second round" of 2026-12-07-denoising.md (archived with its results, not a tool).

    python docs/results/2026-12-07-denoising-probe.py pbmc8k 0        # molecule split, seed 0

Fits the U-Net once on the split's train part (the cosine 2,000-step budget; kept under --workdir and
reused), then scores outputs assembled from it by the protocol (``scgapfill.eval.denoising``): the
deliverable; every gene's logs averaged over the U-Net's or PCA neighbours (k, steps); the modelled
genes as levels or as expected counts ``(1 - pi) mu``. Then, on the modelled genes only, each candidate
composition's Poisson score and its expected log's MSE without the protocol's renormalisation.
Rows are printed as JSON and appended to ``<workdir>/variants.jsonl``.
"""
import argparse
import json
import os
import time

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scgapfill import params as P
from scgapfill.data import preprocessing
from scgapfill.data.normalization import as_composition, expected_lognorm, lognorm
from scgapfill.eval.benchmark import prepare_dataset
from scgapfill.eval.denoising import POISSON_EPS, _rows_lognorm, denoising_scores, profile_of, split_molecules
from scgapfill.graph.cellgraph import knn_graph, pca_embedding
from scgapfill.model import GapFill
from scgapfill.pipelines.modeling.nodes import compute_gene_layout

BUDGET = "train.cells_per_epoch=4096 train.max_val_cells=2048 train.max_steps=2000 train.lr_schedule=cosine"

parser = argparse.ArgumentParser()
parser.add_argument("dataset")
parser.add_argument("seed", type=int)
parser.add_argument("--workdir", default="data/07_model_output/denoising_probe")
args = parser.parse_args()
os.makedirs(args.workdir, exist_ok=True)
full = prepare_dataset(args.dataset, {"input": {}, "qc": {}, "normalize": {}, "hvg": {"n_top_genes": 10**9}})
counts, genes = sp.csr_matrix(full.layers["counts"]), list(full.var_names)
split = split_molecules(counts, args.seed)
keep = np.asarray(split.train.sum(axis=1)).ravel() > 0
train, test = split.train[keep], split.test[keep]
given = ad.AnnData(X=sp.csr_matrix(train, dtype=np.float32))
given.var_names = genes
model_path = os.path.join(args.workdir, f"model_{args.dataset}_molecules_{args.seed}")
if not os.path.exists(model_path):
    prm = P.merged(P.read_parameter_files("conf/base"), P.dotted_overrides(BUDGET.split()))
    modelled = preprocessing.select_genes(preprocessing.normalize(given.copy(), prm["normalize"]), prm["hvg"])
    layout = compute_gene_layout(modelled, prm["layout"], prm["model"])
    fitted = GapFill(prm["model"], {**prm["train"], "enable_progress_bar": False}, prm["layout"], prm["impute"])
    fitted.fit(modelled, layer="counts", gene_layout=layout)
    fitted.save(model_path)
gf = GapFill.load(model_path)
mod = np.isin(genes, gf.gene_names)
depth = np.asarray(train.sum(axis=1), dtype=np.float64).ravel()
obs_log = lognorm(train, depth).toarray()
test_dense = test.toarray()
test_log = _rows_lognorm(test_dense)


def score(name, out):
    err = (np.log1p(1e4 * profile_of(out)) - test_log) ** 2
    row = {"dataset": args.dataset, "seed": args.seed, "variant": name, **denoising_scores(out, train, test),
           "mse_modelled": float(err[:, mod].mean()), "mse_others": float(err[:, ~mod].mean())}
    print(json.dumps(row), flush=True)
    with open(os.path.join(args.workdir, "variants.jsonl"), "a") as stream:
        stream.write(json.dumps(row) + "\n")


score("deliverable", gf.impute_matrix(given, layer=None)[0])
raw = GapFill.from_bundle(gf.bundle, impute={"scale": "observed_library", "fill_only_zeros": False,
                                             "unmodelled": "observed"})
L = np.asarray(raw.impute_matrix(given, layer=None)[0], dtype=np.float64)[:, mod]


def averaging(embedding, k):
    graph = sp.csr_matrix(knn_graph(embedding, k, 0))
    graph.data[:] = 1
    graph = graph + sp.identity(graph.shape[0])
    return sp.csr_matrix(sp.diags(1 / np.asarray(graph.sum(axis=1)).ravel()) @ graph)


unet_embedding, _ = pca_embedding(sp.csr_matrix(L), 30, 0)
pca_embedding_, _ = pca_embedding(sp.csr_matrix(obs_log[:, mod]), 30, 0)
for graph_name, embedding in (("unet", unet_embedding), ("pca", pca_embedding_)):
    for k in (15, 30):
        W = averaging(embedding, k)
        smoothed = obs_log
        for steps in (1, 2, 3):
            smoothed = W @ smoothed
            score(f"logs_{graph_name}_k{k}_s{steps}", smoothed)

others = averaging(unet_embedding, 15) @ obs_log[:, ~mod]
out = np.empty_like(obs_log)
out[:, ~mod] = others
out[:, mod] = L
score("levels_modelled", as_composition(out.astype(np.float32)))
info = gf.bundle.info
c0, c1 = info["dropout_curve_intercept"], info["dropout_curve_slope"]
mu = np.expm1(L) * depth[:, None] / 1e4
kept = 1 - 1 / (1 + np.exp(-(c0 + c1 * np.log(mu + 1e-6))))
out[:, mod] = np.log1p(np.expm1(L) * kept)
score("expected_counts_modelled", as_composition(out.astype(np.float32)))

# The modelled genes alone, without the protocol's renormalisation.
test_depth = np.maximum(np.asarray(test.sum(axis=1), dtype=np.float64).ravel(), 1)
scale = test.sum() / depth.sum()
observed_share = sp.csr_matrix(train.multiply(1 / depth[:, None]))[:, mod]
W = averaging(pca_embedding_, 30)
for name, share in (("observed", observed_share.toarray()), ("unet_levels", np.expm1(L) / 1e4),
                    ("unet_expected_counts", np.expm1(L) / 1e4 * kept),
                    ("counts_pca_k30_s2", np.asarray((W @ (W @ observed_share)).todense()))):
    pred = share * depth[:, None] * scale
    y = test_dense[:, mod]
    row = {"dataset": args.dataset, "seed": args.seed, "composition": name,
           "poisson_modelled": float(np.mean(pred - y * np.log(pred + POISSON_EPS))),
           "mse_expected_log_modelled": float(np.mean(
               (expected_lognorm(share * depth[:, None], depth[:, None]) - test_log[:, mod]) ** 2))}
    print(json.dumps(row), flush=True)
