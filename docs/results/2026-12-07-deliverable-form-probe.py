"""One-off probe behind "The expected log and a longer neighbour average" of 2026-12-07-denoising.md (archived).

    python docs/results/2026-12-07-deliverable-form-probe.py pbmc8k 0

Fits the default U-Net once on the molecule split's train part (kept under --workdir), then scores by the
protocol the deliverable and the candidate: the modelled genes as their expected log-normalised value at the
cell's depth (``impute.form: expected_log``), the other genes' logs averaged over 30 neighbours found on
those, 2 or 3 times; and the deliverable's own modelled genes with that average for the others.
"""
import argparse, json, os, time
import anndata as ad, numpy as np, scipy.sparse as sp
from scgapfill import params as P
from scgapfill.data import preprocessing
from scgapfill.data.normalization import expected_lognorm, lognorm
from scgapfill.eval.benchmark import prepare_dataset
from scgapfill.eval.denoising import _rows_lognorm, denoising_scores, profile_of, split_molecules
from scgapfill.graph.cellgraph import knn_graph, pca_embedding
from scgapfill.model import GapFill
from scgapfill.pipelines.modeling.nodes import compute_gene_layout

ap = argparse.ArgumentParser()
ap.add_argument("dataset"); ap.add_argument("seed", type=int)
ap.add_argument("--fit-only", action="store_true")
ap.add_argument("--workdir", default="data/07_model_output/deliverable_form_probe")
a = ap.parse_args()
os.makedirs(a.workdir, exist_ok=True)
full = prepare_dataset(a.dataset, {"input": {}, "qc": {}, "normalize": {}, "hvg": {"n_top_genes": 10**9}})
counts, genes = sp.csr_matrix(full.layers["counts"]), list(full.var_names)
split = split_molecules(counts, a.seed)
keep = np.asarray(split.train.sum(axis=1)).ravel() > 0
train, test = split.train[keep], split.test[keep]
given = ad.AnnData(X=sp.csr_matrix(train, dtype=np.float32)); given.var_names = genes
mp = os.path.join(a.workdir, f"model_{a.dataset}_{a.seed}_molpois")
if not os.path.exists(mp):
    t = time.time()
    prm = P.merged(P.read_parameter_files("conf/base"), {})
    modelled = preprocessing.select_genes(preprocessing.normalize(given.copy(), prm["normalize"]), prm["hvg"])
    layout = compute_gene_layout(modelled, prm["layout"], prm["model"])
    f = GapFill(prm["model"], {**prm["train"], "enable_progress_bar": False}, prm["layout"], prm["impute"])
    f.fit(modelled, layer="counts", gene_layout=layout); f.save(mp)
    print("fit", a.dataset, a.seed, time.time() - t, flush=True)
if a.fit_only:
    raise SystemExit
gf = GapFill.load(mp)
mod = np.isin(genes, gf.gene_names)
depth = np.asarray(train.sum(axis=1), dtype=np.float64).ravel()
obs_log = lognorm(train, depth).toarray().astype(np.float32)
test_log = _rows_lognorm(test.toarray())
def score(name, out):
    err = (np.log1p(1e4 * profile_of(out)) - test_log) ** 2
    row = {"dataset": a.dataset, "seed": a.seed, "variant": name, **denoising_scores(out, train, test),
           "mse_mod": float(err[:, mod].mean()), "mse_unmod": float(err[:, ~mod].mean())}
    print(json.dumps(row), flush=True)
    open(os.path.join(a.workdir, "variants.jsonl"), "a").write(json.dumps(row) + "\n")
D = np.asarray(gf.impute_matrix(given, layer=None)[0], dtype=np.float64)
score("deliverable", D)
raw = GapFill.from_bundle(gf.bundle, impute={"form": "level", "scale": "observed_library", "fill_only_zeros": False,
                                             "unmodelled": "observed"})
L = np.asarray(raw.impute_matrix(given, layer=None)[0], dtype=np.float64)[:, mod]
mu = np.expm1(L) * depth[:, None] / 1e4
def EL(mu, d, rows=512):
    out = np.empty(mu.shape, dtype=np.float32)
    for i in range(0, mu.shape[0], rows):
        out[i:i+rows] = expected_lognorm(mu[i:i+rows], d[i:i+rows])
    return out
E = EL(mu, depth[:, None])
emb, _ = pca_embedding(sp.csr_matrix(E), 30, 0)
def averaging(k):
    g = sp.csr_matrix(knn_graph(emb, k, 0)); g.data[:] = 1; g = g + sp.identity(g.shape[0])
    return sp.csr_matrix(sp.diags(1 / np.asarray(g.sum(axis=1)).ravel()) @ g)
W = averaging(30)
s_log = W @ (W @ obs_log)
out = np.empty_like(obs_log)
out[:, mod] = E; out[:, ~mod] = s_log[:, ~mod]
score("E+logavg_k30_s2", out)
out[:, mod] = D[:, mod]
score("deliv_mod+logavg_k30_s2", out)
s_log = W @ s_log
out[:, mod] = E; out[:, ~mod] = s_log[:, ~mod]
score("E+logavg_k30_s3", out)
