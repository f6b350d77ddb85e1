"""The Splatter-like simulator: determinism, shapes, dropout and group structure."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from scgapfill import simulate
from scgapfill.params import ParameterError, SimulationParams

KW = dict(n_cells=120, n_genes=80, n_groups=3)


def _dense(m) -> np.ndarray:
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def test_same_seed_same_data(small_adata: ad.AnnData) -> None:
    again = simulate(**KW, seed=1)
    np.testing.assert_array_equal(_dense(again.X), _dense(small_adata.X))
    np.testing.assert_array_equal(_dense(again.layers["true_counts"]), _dense(small_adata.layers["true_counts"]))
    np.testing.assert_array_equal(again.layers["true_mean"], small_adata.layers["true_mean"])
    assert list(again.obs["group"]) == list(small_adata.obs["group"])


def test_params_object_dict_and_overrides_agree(small_adata: ad.AnnData) -> None:
    from_model = simulate(SimulationParams(**KW, seed=1))
    from_dict = simulate({**KW, "seed": 1})
    for other in (from_model, from_dict):
        np.testing.assert_array_equal(_dense(other.X), _dense(small_adata.X))


def test_different_seed_different_data(small_adata: ad.AnnData) -> None:
    other = simulate(**KW, seed=2)
    assert other.shape == small_adata.shape
    assert not np.array_equal(_dense(other.X), _dense(small_adata.X))
    assert not np.array_equal(other.layers["true_mean"], small_adata.layers["true_mean"])


def test_shapes_and_annotations(small_adata: ad.AnnData) -> None:
    a = small_adata
    assert a.shape == (120, 80)
    assert sp.issparse(a.X)
    assert a.layers["true_counts"].shape == (120, 80)
    assert a.layers["true_mean"].shape == (120, 80)
    assert a.obs["group"].dtype == "category"
    assert a.obs["group"].cat.categories.size == 3
    assert a.obs_names.is_unique and a.var_names.is_unique
    assert "de_groups" in a.var
    x = _dense(a.X)
    np.testing.assert_array_equal(x, np.rint(x))
    assert (a.layers["true_mean"] > 0).all()


def test_invalid_simulation_parameter_is_refused() -> None:
    with pytest.raises(ParameterError, match=r"input\.simulation\.n_cells"):
        simulate(n_cells=1)
    with pytest.raises(ParameterError, match=r"input\.simulation\.n_cels"):
        simulate(n_cels=100)  # a typo is refused, not ignored


def test_dropout_only_removes_counts(small_adata: ad.AnnData) -> None:
    x = _dense(small_adata.X)
    true = _dense(small_adata.layers["true_counts"])
    assert (x <= true).all()
    # Dropout zeroes whole entries: what is kept is kept exactly.
    kept = x > 0
    np.testing.assert_array_equal(x[kept], true[kept])
    assert small_adata.X.nnz < (true > 0).sum()
    assert x.sum() < true.sum()
    assert 0 < small_adata.uns["simulation"]["dropout_rate"] < 1


def test_more_dropout_at_low_mean() -> None:
    a = simulate(n_cells=300, n_genes=150, n_groups=3, seed=4)
    x = _dense(a.X)
    true = _dense(a.layers["true_counts"])
    mean = a.layers["true_mean"]
    expressed = true > 0
    low_q, high_q = np.quantile(mean[expressed], [0.25, 0.75])
    dropped = expressed & (x == 0)
    low = dropped[expressed & (mean <= low_q)].mean()
    high = dropped[expressed & (mean >= high_q)].mean()
    assert low > 2 * high
    assert low > 0.2


def _group_spread(a: ad.AnnData) -> np.ndarray:
    """Per gene: range over groups of the mean log-normalised observed expression."""
    x = _dense(a.X).astype(np.float64)
    norm = np.log1p(x / x.sum(axis=1, keepdims=True) * 1e4)
    groups = a.obs["group"].to_numpy()
    means = np.stack([norm[groups == g].mean(axis=0) for g in np.unique(groups)])
    return means.max(axis=0) - means.min(axis=0)


@pytest.mark.parametrize("seed", [1, 2])
def test_de_genes_differ_between_groups(seed: int) -> None:
    a = simulate(n_cells=300, n_genes=150, n_groups=3, seed=seed)
    is_de = (a.var["de_groups"] != "").to_numpy()
    assert 0 < is_de.sum() < a.n_vars
    spread = _group_spread(a)
    assert np.median(spread[is_de]) > 2 * np.median(spread[~is_de])


def test_no_de_means_no_group_differences() -> None:
    a = simulate(n_cells=300, n_genes=150, n_groups=3, seed=1, de_prob=0.0)
    assert (a.var["de_groups"] == "").all()
    mean = a.layers["true_mean"]
    proportions = mean / mean.sum(axis=1, keepdims=True)
    # Without DE every cell draws from the same gene proportions.
    np.testing.assert_allclose(proportions, np.broadcast_to(proportions[0], proportions.shape), rtol=1e-5)
