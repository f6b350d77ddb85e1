"""A Splatter-like simulator of scRNA-seq counts with known truth.

Counts are gamma-Poisson (negative binomial) around a per-cell, per-gene mean
built from gene base means, group (cell type) differential-expression factors
and library sizes; dropout removes counts with a probability that falls
logistically with the mean (Zappia, Phipson & Oshlack 2017). The AnnData it
returns keeps the truth beside the observation:

- ``X``: observed counts after dropout (CSR, what a method receives)
- ``layers["true_counts"]``: the counts before dropout
- ``layers["true_mean"]``: the noise-free gamma-Poisson mean (what a denoiser should recover)
- ``obs["group"]``: the cell type; ``var["de_groups"]``: groups where a gene is differentially expressed
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .params import SimulationParams, parse


def simulate(params: SimulationParams | dict | None = None, **overrides) -> ad.AnnData:
    """Simulate a counts AnnData with ground truth; same parameters and seed give the same data."""
    values = params.model_dump() if isinstance(params, SimulationParams) else dict(params or {})
    # Overrides are validated with the rest, so a wrong one names its key (input.simulation.<key>).
    p = parse("input", {"simulation": {**values, **overrides}}).simulation
    rng = np.random.default_rng(p.seed)

    gene_mean = rng.gamma(p.mean_shape, 1.0 / p.mean_rate, size=p.n_genes)
    group = rng.integers(0, p.n_groups, size=p.n_cells)

    # One DE factor per group and gene; most genes are not DE (factor 1).
    is_de = rng.random((p.n_groups, p.n_genes)) < p.de_prob
    fold = rng.lognormal(p.de_loc, p.de_scale, size=(p.n_groups, p.n_genes))
    down = rng.random((p.n_groups, p.n_genes)) < p.de_down_prob
    factor = np.where(is_de, np.where(down, 1.0 / fold, fold), 1.0)

    lib_size = rng.lognormal(p.lib_loc, p.lib_scale, size=p.n_cells)
    proportions = gene_mean[None, :] * factor[group]
    proportions /= proportions.sum(axis=1, keepdims=True)
    mean = proportions * lib_size[:, None]

    # Biological coefficient of variation: gamma noise on the mean, then Poisson sampling.
    if p.bcv > 0:
        shape = 1.0 / p.bcv**2
        cell_mean = rng.gamma(shape, mean / shape)
    else:
        cell_mean = mean
    true_counts = rng.poisson(cell_mean).astype(np.float32)

    drop_prob = 1.0 / (1.0 + np.exp(-p.dropout_shape * (np.log(mean) - p.dropout_mid)))
    keep = rng.random(true_counts.shape) >= drop_prob
    observed = sp.csr_matrix(true_counts * keep)
    observed.eliminate_zeros()

    obs = pd.DataFrame(
        {"group": pd.Categorical([f"group{g}" for g in group]), "true_lib_size": lib_size},
        index=[f"cell{i}" for i in range(p.n_cells)],
    )
    var = pd.DataFrame(
        {
            "base_mean": gene_mean,
            "de_groups": [",".join(f"group{g}" for g in np.flatnonzero(is_de[:, j])) for j in range(p.n_genes)],
        },
        index=[f"gene{j}" for j in range(p.n_genes)],
    )
    adata = ad.AnnData(X=observed, obs=obs, var=var)
    adata.layers["true_counts"] = sp.csr_matrix(true_counts)
    adata.layers["true_mean"] = mean.astype(np.float32)
    adata.uns["label_key"] = "group"
    adata.uns["simulation"] = {**p.model_dump(), "dropout_rate": float(1 - observed.nnz / max(1, (true_counts > 0).sum()))}
    return adata
