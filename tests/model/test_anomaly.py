"""The anomaly score: how badly the model predicts molecules hidden from each cell, depth-free."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import gene_names, make_counts

from scgapfill.infer.anomaly import FLAG_KEY, SCORE_KEY, depth_free_z, hidden_deviance
from scgapfill.infer.streaming import StreamedImputation
from scgapfill.model import GapFill

N_ODD = 15


def with_dying_cells(seed: int = 0) -> tuple[ad.AnnData, np.ndarray]:
    """Cells of three groups, then ``N_ODD`` cells as a dying cell looks: a third of a typical cell's
    molecules, and as many again on three genes (as mitochondrial reads crowd a broken cell's library)."""
    rng = np.random.default_rng(seed)
    counts = make_counts(300, seed=seed).toarray()
    like = counts[rng.choice(counts.shape[0], N_ODD, replace=False)]
    odd = rng.binomial(like.astype(np.int64), 0.3).astype(np.float64)
    odd[:, :3] += rng.poisson(like.sum(axis=1, keepdims=True) * 0.25, size=(N_ODD, 3))
    adata = ad.AnnData(sp.csr_matrix(np.vstack([counts, odd]), dtype=np.float32))
    adata.var_names = gene_names()
    adata.obs_names = [f"cell{i}" for i in range(adata.n_obs)]
    return adata, np.r_[np.zeros(counts.shape[0], bool), np.ones(N_ODD, bool)]


@pytest.fixture(scope="module")
def fitted(model_params, train_params):
    adata, odd = with_dying_cells()
    model = GapFill(model_params, train_params.model_copy(update={"max_epochs": 8, "patience": 8}))
    return model.fit(adata), adata, odd


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(score)) + 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_dying_cells_score_high_and_are_flagged_where_depth_alone_does_not_find_them(fitted):
    model, adata, odd = fitted
    out = model.impute(adata, inplace=False)
    score, flag = out.obs[SCORE_KEY].to_numpy(), out.obs[FLAG_KEY].to_numpy()
    depth = np.asarray(adata.X.sum(axis=1)).ravel()
    # Measured 0.80 with 40% of them flagged (a tiny network trained for seconds); a score that does not
    # see them ranks them at 0.5, as their depth does.
    assert auroc(score, odd) > 0.7
    assert abs(auroc(depth, odd) - 0.5) < 0.15
    assert flag[odd].mean() >= 0.2 and flag[~odd].mean() <= 0.02
    assert abs(np.median(score[~odd])) < 0.5  # a typical cell scores about 0


def test_the_inference_output_carries_the_same_score(fitted):
    model, adata, _ = fitted
    in_memory = model.impute(adata, inplace=False).obs[SCORE_KEY].to_numpy()
    streamed = StreamedImputation(model.bundle, adata.X, adata.obs, chunk_size=100).to_memory()
    np.testing.assert_allclose(streamed.obs[SCORE_KEY].to_numpy(), in_memory, rtol=1e-4, atol=1e-4)
    assert streamed.obs[FLAG_KEY].dtype == bool


def test_no_score_when_switched_off(fitted):
    model, adata, _ = fitted
    off = GapFill.from_bundle(model.bundle, impute={"anomaly": False}).impute(adata, inplace=False)
    assert SCORE_KEY not in off.obs and FLAG_KEY not in off.obs


def test_the_depth_line_leaves_a_deviance_that_only_grows_with_depth_at_zero():
    rng = np.random.default_rng(0)
    depth = rng.uniform(100, 10_000, size=500)
    deviance = 0.3 * depth**0.8 * np.exp(rng.normal(0, 0.05, size=500))
    deviance[7] *= 3  # one cell three times worse than its depth explains
    z = depth_free_z(deviance, depth)
    assert z[7] > 10 and np.abs(np.delete(z, 7)).max() < 5
    assert np.corrcoef(np.delete(z, 7), np.log(np.delete(depth, 7)))[0, 1] ** 2 < 0.01


def test_a_perfect_prediction_of_the_hidden_counts_scores_only_the_zeros():
    counts = sp.csr_matrix(np.array([[3.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 2.0]]))
    hidden = sp.csr_matrix(np.array([[3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]]))
    depth = np.array([4.0, 4.0])
    share = counts.toarray() / 4
    np.testing.assert_allclose(hidden_deviance(hidden, share, depth, counts, 0.1), 0, atol=1e-12)
    share = np.full((2, 4), 0.25)  # the zeros now expected at 1 each, the hidden counts missed
    off = hidden_deviance(hidden, share, depth, counts, 0.1)
    np.testing.assert_allclose(off[0], 2 * (3 * np.log(3) - 2 + 0.1 * 2))
