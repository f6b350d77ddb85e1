import importlib.util

import numpy as np
import pytest
import scipy.sparse as sp

from scgapfill.data.normalization import lognorm, size_factors
from scgapfill.eval.baselines import BASELINES, available_baselines, run_baseline
from scgapfill.eval.baselines.alra import alra, choose_k
from scgapfill.eval.baselines.magic import magic
from scgapfill.eval.baselines.scvi import scvi
from scgapfill.eval.baselines.simple import expected_nonzero_lognorm, gene_depth, gene_mean, knn, none

FAST = ["none", "gene_mean", "gene_depth", "knn", "alra"]


@pytest.fixture(scope="module")
def groups():
    """100 cells x 50 genes of Poisson counts from 3 groups with different means."""
    rng = np.random.default_rng(0)
    means = rng.gamma(1.0, 2.0, size=(3, 50))
    group = np.repeat(np.arange(3), [34, 33, 33])
    counts = rng.poisson(means[group]).astype(float)
    counts[:, 0] += 1  # no empty cell
    return sp.csr_matrix(counts), group


def _no_scvi(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scvi" else real(name, *a))


# ----------------------------------------------------------------------------- common contract


@pytest.mark.parametrize("name", FAST)
def test_fast_baselines_follow_the_contract(name, groups):
    counts, _ = groups
    out = run_baseline(name, counts, seed=0)
    assert isinstance(out, np.ndarray) and out.shape == counts.shape
    assert out.dtype in (np.float32, np.float64)
    assert np.all(np.isfinite(out)) and out.min() >= 0
    np.testing.assert_array_equal(out, run_baseline(name, counts, seed=0))


@pytest.mark.parametrize("name", FAST + ["magic"])
def test_baselines_reject_empty_cells_and_negative_counts(name):
    counts = np.ones((12, 6))
    counts[3] = 0
    with pytest.raises(ValueError, match=r"cell\(s\) 3 have no counts"):
        run_baseline(name, sp.csr_matrix(counts))
    with pytest.raises(ValueError, match="negative"):
        run_baseline(name, sp.csr_matrix(-np.ones((12, 6))))


def test_explicit_zeros_in_the_input_are_ignored(groups):
    counts, _ = groups
    with_zero = counts.copy()
    with_zero.data[:5] = 0  # masking can leave stored zeros
    np.testing.assert_array_equal(gene_mean(with_zero), gene_mean(sp.csr_matrix(with_zero.toarray())))


# ----------------------------------------------------------------------------- none / gene_mean / knn

SMALL = np.array([[1.0, 0.0, 0.0], [3.0, 1.0, 0.0], [0.0, 2.0, 0.0], [2.0, 2.0, 0.0]])


def test_none_is_lognorm_by_hand():
    out = none(sp.csr_matrix(SMALL))
    expected = np.log1p(SMALL / SMALL.sum(axis=1, keepdims=True) * 1e4)
    np.testing.assert_allclose(out, expected)
    assert out[0, 0] == pytest.approx(np.log(10001.0))
    assert out[1, 0] == pytest.approx(np.log1p(7500.0))


def test_gene_mean_by_hand():
    out = gene_mean(sp.csr_matrix(SMALL))
    ln = np.log1p(SMALL / SMALL.sum(axis=1, keepdims=True) * 1e4)
    gene0 = np.mean([ln[0, 0], ln[1, 0], ln[3, 0]])  # nonzero values only
    gene1 = np.mean([ln[1, 1], ln[2, 1], ln[3, 1]])
    assert out[2, 0] == pytest.approx(gene0)
    assert out[0, 1] == pytest.approx(gene1)
    np.testing.assert_allclose(out[[0, 1, 3], 0], ln[[0, 1, 3], 0])  # nonzeros kept
    np.testing.assert_array_equal(out[:, 2], 0.0)  # a gene with no counts stays 0


@pytest.mark.parametrize("mean", [0.0, 1e-5, 0.3, 4.0, 29.0, 31.0, 250.0])
def test_expected_nonzero_lognorm_equals_the_poisson_sum(mean):
    from scipy.stats import poisson

    library = 1800.0
    counts = np.arange(1, 5000)
    probability = poisson.pmf(counts, mean) if mean else (counts == 1).astype(float)
    exact = (probability * np.log1p(1e4 * counts / library)).sum() / probability.sum()
    assert expected_nonzero_lognorm(mean, library) == pytest.approx(exact, abs=1e-3 if mean > 30 else 1e-9)


def test_expected_nonzero_lognorm_refuses_negative_means():
    with pytest.raises(ValueError, match=">= 0"):
        expected_nonzero_lognorm(np.array([-1.0]), 100.0)


def test_gene_depth_by_hand():
    out = gene_depth(sp.csr_matrix(SMALL))
    ln = np.log1p(SMALL / SMALL.sum(axis=1, keepdims=True) * 1e4)
    library = SMALL.sum(axis=1)
    share = SMALL.sum(axis=0) / SMALL.sum()
    nonzero = SMALL > 0
    np.testing.assert_allclose(out[nonzero], ln[nonzero])  # observed counts kept
    assert out[2, 0] == pytest.approx(expected_nonzero_lognorm(share[0] * library[2], library[2]))
    assert out[0, 1] == pytest.approx(expected_nonzero_lognorm(share[1] * library[0], library[0]))
    # A gene with no counts: one count's value at the cell's depth, deeper cells lower.
    np.testing.assert_allclose(out[:, 2], np.log1p(1e4 / library))
    assert out[1, 2] < out[0, 2]


def test_knn_averages_the_nearest_cells():
    counts = np.array(
        [[10, 10, 0, 0], [9, 11, 0, 0], [0, 0, 10, 10], [0, 0, 11, 9], [10, 9, 0, 1]], dtype=float
    )
    ln = lognorm(counts, size_factors(counts))
    np.testing.assert_allclose(knn(sp.csr_matrix(counts), k=1), ln)  # only the cell itself
    out = knn(sp.csr_matrix(counts), k=2)
    np.testing.assert_allclose(out[2], (ln[2] + ln[3]) / 2)
    np.testing.assert_allclose(out[3], (ln[2] + ln[3]) / 2)
    out = knn(sp.csr_matrix(counts), k=3, n_pcs=30)  # n_pcs capped at 3
    np.testing.assert_allclose(out[0], (ln[0] + ln[1] + ln[4]) / 3)


def test_knn_validation(groups):
    counts, _ = groups
    with pytest.raises(ValueError, match="exceeds the number of cells"):
        knn(counts, k=101)
    with pytest.raises(ValueError, match="positive integer"):
        knn(counts, k=0)


# ----------------------------------------------------------------------------- ALRA


def _alra_by_hand(counts, k, quantile_prob=0.001):
    """Each ALRA step written out, gene by gene, with an exact SVD."""
    sf = counts.sum(axis=1)
    a = np.log1p(counts / sf[:, None] * 1e4)
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    a_k = u[:, :k] @ np.diag(s[:k]) @ vt[:k]
    out = np.zeros_like(a)
    seen = {"not_rescaled": 0, "restored_after_threshold": 0, "clipped": 0, "restored_after_clip": 0}
    for g in range(a.shape[1]):
        col = a_k[:, g].copy()
        threshold = abs(np.quantile(col, quantile_prob))
        col[col <= threshold] = 0.0
        seen["restored_after_threshold"] += int(np.sum((a[:, g] != 0) & (col == 0)))
        a_nz, k_nz = a[a[:, g] != 0, g], col[col != 0]
        if len(a_nz) > 1 and len(k_nz) > 1 and np.std(k_nz, ddof=1) > 0:
            z = (col - k_nz.mean()) / np.std(k_nz, ddof=1)
            col = np.where(col != 0, z * np.std(a_nz, ddof=1) + a_nz.mean(), 0.0)
        else:
            seen["not_rescaled"] += 1
        seen["clipped"] += int(np.sum(col < 0))
        seen["restored_after_clip"] += int(np.sum((col < 0) & (a[:, g] != 0)))
        col[col < 0] = 0.0
        restore = (a[:, g] != 0) & (col == 0)
        col[restore] = a[restore, g]
        out[:, g] = col
    return out, seen


# Two 6 x 5 cases that between them exercise every step (asserted below).
ALRA_CASES = {
    "unscaled_gene_and_clip": [
        [1358, 0, 1, 0, 0], [15, 1546, 0, 433, 0], [157, 0, 0, 34, 0],
        [0, 0, 0, 2, 17], [2, 20, 0, 526, 0], [0, 5, 8, 27, 0],
    ],
    "clip_then_restore": [
        [1, 300, 0, 1, 129], [0, 132, 207, 1, 283], [0, 20, 2, 1, 798],
        [1757, 4, 3, 20, 0], [0, 1, 0, 1, 11], [1, 0, 2670, 1, 54],
    ],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ALRA_CASES))
def test_alra_matches_the_steps_by_hand(case):
    counts = np.array(ALRA_CASES[case], dtype=float)
    expected, seen = _alra_by_hand(counts, k=2)
    assert seen["restored_after_threshold"] > 0 and seen["clipped"] > 0
    if case == "unscaled_gene_and_clip":
        assert seen["not_rescaled"] > 0
    else:
        assert seen["restored_after_clip"] > 0
    np.testing.assert_allclose(alra(sp.csr_matrix(counts), k=2), expected, atol=1e-8)


def test_alra_threshold_is_inclusive():
    # quantile_prob=0 puts the threshold exactly on each gene's minimum: "<=" zeroes it.
    counts = np.array(ALRA_CASES["unscaled_gene_and_clip"], dtype=float)
    expected, _ = _alra_by_hand(counts, k=2, quantile_prob=0.0)
    np.testing.assert_allclose(alra(sp.csr_matrix(counts), k=2, quantile_prob=0.0), expected, atol=1e-8)


def test_alra_keeps_the_original_nonzeros_nonzero(groups):
    counts, _ = groups
    out = alra(counts, k=3)
    assert np.all(out[counts.toarray() > 0] > 0)


def _with_spectrum(svals, shape, seed=0):
    """A matrix with exactly these singular values (rank small enough for an exact randomised SVD)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(shape[0], len(svals))))
    v, _ = np.linalg.qr(rng.normal(size=(shape[1], len(svals))))
    return (u * svals) @ v.T


def _spectrum(signal, n_values, wide_gaps_after=(), seed=0):
    """``signal`` values on top of a noise floor whose gaps are 0.01 +- 10%.

    ``wide_gaps_after``: 1-based positions ``k`` whose gap (to value ``k + 1``) is 0.05.
    """
    gaps = np.random.default_rng(seed).uniform(0.009, 0.011, size=n_values - len(signal) - 1)
    for position in wide_gaps_after:
        gaps[position - len(signal) - 1] = 0.05  # about 70 sd of the noise gaps
    noise = 1.0 + np.concatenate([[0.0], np.cumsum(gaps[::-1])])[::-1]
    return np.concatenate([signal, noise])


def test_choose_k_on_known_spectra():
    # 100 components: the tail is gaps 79..99 (1-based), as in ALRA's choose_k.
    assert choose_k(_with_spectrum(_spectrum([10, 8, 6, 4, 3], 100), (150, 120))) == 5
    # The last large gap wins, not the first.
    assert choose_k(_with_spectrum(_spectrum([10, 8, 6, 4, 3], 100, wide_gaps_after=[12]), (150, 120))) == 12
    # Wide gaps after values 79 and 80 lie in the tail, inflate its sd, and so hide the one after 12.
    spectrum = _spectrum([10, 8, 6, 4, 3], 100, wide_gaps_after=[12, 79, 80])
    assert choose_k(_with_spectrum(spectrum, (150, 120))) == 5
    # Fewer components (29 of a 40 x 30 matrix): the last 20% of the gaps is the tail.
    assert choose_k(_with_spectrum(_spectrum([10, 8, 6], 30), (40, 30))) == 3
    # One signal value gives k = 1, raised to the minimum of 2.
    assert choose_k(_with_spectrum(_spectrum([10], 100), (150, 120))) == 2


def test_choose_k_needs_a_big_enough_matrix():
    with pytest.raises(ValueError, match="pass k"):
        choose_k(np.ones((3, 10)))


def test_alra_auto_k_and_validation(groups):
    counts, _ = groups
    assert alra(counts).shape == counts.shape
    with pytest.raises(ValueError, match="k must be"):
        alra(counts, k=0)
    with pytest.raises(ValueError, match="quantile_prob"):
        alra(counts, k=2, quantile_prob=1.5)


# ----------------------------------------------------------------------------- MAGIC


def test_magic_smooths_towards_the_groups(groups):
    counts, group = groups
    out = magic(counts, seed=0)
    assert out.shape == counts.shape and np.all(np.isfinite(out)) and out.min() >= 0
    np.testing.assert_array_equal(out, magic(counts, seed=0))
    # Diffusion pulls each cell towards its group: within-group spread shrinks.
    raw = none(counts)
    spread = [np.mean(np.var(m[group == g], axis=0)) for m in (raw, out) for g in range(3)]
    assert max(spread[3:]) < min(spread[:3])


def test_magic_on_few_cells(groups):
    # magic-impute alone fails here (it asks for 3 * knn + 1 = 16 neighbours of 10 cells).
    counts, _ = groups
    assert magic(sp.csr_matrix(counts[:10].toarray() + 1), knn=5).shape == (10, 50)


def test_magic_validation(groups):
    counts, _ = groups
    with pytest.raises(ValueError, match="knn"):
        magic(counts[:6], knn=5)
    with pytest.raises(ValueError, match="knn_max"):
        magic(counts, knn=5, knn_max=3)
    with pytest.raises(ValueError, match="'auto' or a positive integer"):
        magic(counts, t=0)


# ----------------------------------------------------------------------------- registry / scVI


def test_registry_names():
    assert set(BASELINES) == {"none", "gene_mean", "gene_depth", "knn", "knn_spatial", "magic", "alra", "scvi"}


def test_available_baselines_drops_scvi_when_missing(monkeypatch):
    _no_scvi(monkeypatch)
    assert available_baselines() == ["none", "gene_mean", "gene_depth", "knn", "knn_spatial", "magic", "alra"]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    assert "scvi" in available_baselines()


def test_run_baseline_unknown_name_lists_the_valid_ones(groups):
    with pytest.raises(ValueError, match=r"unknown baseline 'mean'.*gene_mean"):
        run_baseline("mean", groups[0])


def test_run_baseline_passes_kwargs(groups):
    counts, _ = groups
    np.testing.assert_array_equal(run_baseline("knn", counts, k=1), none(counts))


def test_scvi_missing_raises_import_error(monkeypatch, groups):
    _no_scvi(monkeypatch)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[scvi\]'"):
        scvi(groups[0])
    with pytest.raises(ImportError, match="scvi-tools"):
        run_baseline("scvi", groups[0])


def test_scvi_runs_when_installed(groups):
    pytest.importorskip("scvi")
    counts, _ = groups
    out = scvi(counts, seed=0, max_epochs=2, accelerator="cpu")
    assert out.shape == counts.shape and np.all(np.isfinite(out)) and out.min() >= 0


# ----------------------------------------------------------------------------- knn_spatial


def test_knn_spatial_averages_each_spot_with_its_nearest_spots_of_its_own_section():
    from scgapfill.data.normalization import lognorm
    from scgapfill.graph.spatial import SpotPositions

    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.poisson(3.0, size=(6, 5)).astype(float) + 1)
    # two sections on overlapping frames: spot 0's nearest by coordinates is spot 3, of the other section
    positions = SpotPositions(np.array([[0, 0], [1, 0], [9, 9], [0, 0], [3, 0], [8, 8]], dtype=float),
                              np.array(["a", "a", "a", "b", "b", "b"]))
    out = run_baseline("knn_spatial", counts, k=2, positions=positions)
    values = lognorm(counts, np.asarray(counts.sum(axis=1)).ravel()).toarray()
    np.testing.assert_allclose(out[0], (values[0] + values[1]) / 2)
    np.testing.assert_allclose(out[3], (values[3] + values[4]) / 2)
    np.testing.assert_allclose(run_baseline("knn_spatial", counts, k=1, positions=positions), values)
    with pytest.raises(ValueError, match=r"obsm\['spatial'\]"):
        run_baseline("knn_spatial", counts, k=2)
