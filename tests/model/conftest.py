"""Tiny data and parameters for the model tests (numpy Poisson counts with group structure)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from scgapfill.data.layout import compute_layout
from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.params import ModelParams, TrainParams

N_CELLS, N_GENES, N_GROUPS = 120, 64, 3


def make_counts(n_cells: int = N_CELLS, n_genes: int = N_GENES, seed: int = 0) -> sp.csr_matrix:
    """Poisson counts around group-specific gene means; every cell has counts."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, N_GROUPS, size=n_cells)
    means = rng.gamma(0.8, 2.0, size=(N_GROUPS, n_genes))
    depth = rng.uniform(0.5, 1.5, size=n_cells)
    counts = rng.poisson(means[group] * depth[:, None]).astype(np.float64)
    counts[:, 0] += 1  # no empty cell, whatever the draw
    matrix = sp.csr_matrix(counts)
    matrix.eliminate_zeros()
    return matrix


def gene_names(n_genes: int = N_GENES) -> list[str]:
    return [f"gene{i:03d}" for i in range(n_genes)]


@pytest.fixture(scope="session")
def counts() -> sp.csr_matrix:
    return make_counts()


@pytest.fixture(scope="session")
def layout(counts: sp.csr_matrix) -> dict:
    return compute_layout(lognorm(counts, size_factors(counts)), gene_names(), "correlation", divisor=4)


@pytest.fixture(scope="session")
def model_params() -> ModelParams:
    return ModelParams(depth=2, base_channels=4, context_channel=True, context_k=5, context_n_pcs=8)


@pytest.fixture(scope="session")
def train_params() -> TrainParams:
    return TrainParams(
        max_epochs=3, patience=3, batch_size=16, seed=0, accelerator="cpu", devices=1, enable_progress_bar=False
    )


@pytest.fixture
def counts_file(tmp_path):
    """``processed.h5ad``: the launcher tests' tiny counts in X and layers['counts'], as the pipeline writes them."""
    import anndata as ad

    from ddp_script import tiny_counts

    counts = tiny_counts()
    adata = ad.AnnData(counts.copy())
    adata.layers["counts"] = counts
    adata.var_names = [f"g{i}" for i in range(counts.shape[1])]
    path = tmp_path / "processed.h5ad"
    adata.write_h5ad(path)
    return path
