"""One-off probe behind "The output's form under the molecule-trained model" of 2026-12-07-denoising.md (archived).

    python docs/results/2026-12-07-output-form-probe.py pbmc8k 0 molpois --set train.training_mask.mode=molecules \\
        train.loss.zip=0 train.loss.poisson=1

Fits once (kept under --workdir), then scores by the protocol the deliverable and the modelled genes written on
every entry as levels, as their expected log at the cell's own depth, and at a tenth of it (the test's depth);
then the expected log with the other genes' logs averaged over neighbours found on it (k, steps), not rescaled.
"""
import argparse, json, os
import anndata as ad, numpy as np, scipy.sparse as sp
from scgapfill import params as P
from scgapfill.data import preprocessing
from scgapfill.data.normalization import as_composition, expected_lognorm, lognorm
from scgapfill.eval.benchmark import prepare_dataset
from scgapfill.eval.denoising import _rows_lognorm, denoising_scores, profile_of, split_molecules
from scgapfill.graph.cellgraph import knn_graph, pca_embedding
from scgapfill.model import GapFill
from scgapfill.pipelines.modeling.nodes import compute_gene_layout

ap = argparse.ArgumentParser()
ap.add_argument("dataset"); ap.add_argument("seed", type=int); ap.add_argument("tag")
ap.add_argument("--set", nargs="*", default=[])
ap.add_argument("--workdir", default="data/07_model_output/output_form_probe")
a = ap.parse_args()
os.makedirs(a.workdir, exist_ok=True)
full = prepare_dataset(a.dataset, {"input": {}, "qc": {}, "normalize": {}, "hvg": {"n_top_genes": 10**9}})
counts, genes = sp.csr_matrix(full.layers["counts"]), list(full.var_names)
split = split_molecules(counts, a.seed)
keep = np.asarray(split.train.sum(axis=1)).ravel() > 0
train, test = split.train[keep], split.test[keep]
given = ad.AnnData(X=sp.csr_matrix(train, dtype=np.float32)); given.var_names = genes
mp = os.path.join(a.workdir, f"model_{a.dataset}_{a.seed}_{a.tag}")
if not os.path.exists(mp):
    prm = P.merged(P.read_parameter_files("conf/base"), P.dotted_overrides(a.set))
    modelled = preprocessing.select_genes(preprocessing.normalize(given.copy(), prm["normalize"]), prm["hvg"])
    layout = compute_gene_layout(modelled, prm["layout"], prm["model"])
    f = GapFill(prm["model"], {**prm["train"], "enable_progress_bar": False}, prm["layout"], prm["impute"])
    f.fit(modelled, layer="counts", gene_layout=layout); f.save(mp)
gf = GapFill.load(mp)
mod = np.isin(genes, gf.gene_names)
depth = np.asarray(train.sum(axis=1), dtype=np.float64).ravel()
obs_log = lognorm(train, depth).toarray()
test_log = _rows_lognorm(test.toarray())
def score(name, out):
    err = (np.log1p(1e4 * profile_of(out)) - test_log) ** 2
    row = {"dataset": a.dataset, "seed": a.seed, "tag": a.tag, "variant": name, **denoising_scores(out, train, test),
           "mse_mod": float(err[:, mod].mean()), "mse_unmod": float(err[:, ~mod].mean())}
    print(json.dumps(row), flush=True)
    open(os.path.join(a.workdir, "variants.jsonl"), "a").write(json.dumps(row) + "\n")
D = np.asarray(gf.impute_matrix(given, layer=None)[0], dtype=np.float64)
score("deliverable", D)
for sm in (0.0, 0.5):  # the last, the default smoothing, is the one the final block uses
    raw = GapFill.from_bundle(gf.bundle, impute={"scale": "observed_library", "fill_only_zeros": False,
                                                 "unmodelled": "observed", "output_smoothing": sm})
    L = np.asarray(raw.impute_matrix(given, layer=None)[0], dtype=np.float64)[:, mod]
    mu = np.expm1(L) * depth[:, None] / 1e4
    info = gf.bundle.info
    if "dropout_curve_intercept" in info and gf.bundle.train.loss.zip:
        c0, c1 = info["dropout_curve_intercept"], info["dropout_curve_slope"]
        mu = mu * (1 - 1 / (1 + np.exp(-(c0 + c1 * np.log(mu + 1e-6)))))
    out = D.copy()
    out[:, mod] = np.log1p(mu / depth[:, None] * 1e4)
    score(f"levels_all_entries_sm{sm}", out)
    out[:, mod] = expected_lognorm(mu, depth[:, None])
    score(f"explog_sm{sm}", out)
    # expected log at the whole-data median depth scaled? at test-like depth (0.1/0.9 of own)
    out[:, mod] = expected_lognorm(mu / 9, depth[:, None] / 9)
    score(f"explog_testdepth_sm{sm}", out)

# The expected log at the cell's depth, the other genes' logs averaged over neighbours found on it.
E = expected_lognorm(mu, depth[:, None])


def averaging(embedding, k):
    g = sp.csr_matrix(knn_graph(embedding, k, 0)); g.data[:] = 1; g = g + sp.identity(g.shape[0])
    return sp.csr_matrix(sp.diags(1 / np.asarray(g.sum(axis=1)).ravel()) @ g)


emb, _ = pca_embedding(sp.csr_matrix(E), 30, 0)
for k in (15, 30):
    W = averaging(emb, k)
    s = obs_log[:, ~mod]
    for steps in (1, 2):
        s = W @ s
        out = np.empty_like(obs_log); out[:, mod] = E; out[:, ~mod] = s
        score(f"explog+logavg_unet_k{k}_s{steps}", out)
