"""Gene layouts: grid size, Hilbert curve, grid round trips and the correlation strategy."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import scipy.sparse as sp

from scgapfill.data import layout


# --- grid_shape ------------------------------------------------------------------


@pytest.mark.parametrize("divisor", [1, 2, 4, 8, 16, 32])
def test_grid_shape_is_divisible_and_large_enough(divisor: int) -> None:
    for n_genes in itertools.chain(range(1, 300), [765, 999, 1000, 1024, 1025, 2000, 4999]):
        height, width = layout.grid_shape(n_genes, divisor)
        assert height % divisor == 0 and width % divisor == 0, (n_genes, divisor)
        assert height * width >= n_genes, (n_genes, divisor)
        # Not wasteful: dropping one band of rows would no longer fit the genes.
        assert (height - divisor) * width < n_genes, (n_genes, divisor)
        # Near-square.
        assert abs(height - width) <= max(divisor, np.sqrt(n_genes)), (n_genes, divisor)


@pytest.mark.parametrize(("n_genes", "divisor"), [(0, 4), (10, 0), (-3, 2)])
def test_grid_shape_rejects_bad_input(n_genes: int, divisor: int) -> None:
    with pytest.raises(ValueError):
        layout.grid_shape(n_genes, divisor)


# --- gilbert_curve ------------------------------------------------------------------


EVEN_SHAPES = [(2, 2), (2, 8), (8, 2), (4, 4), (4, 8), (8, 4), (6, 10), (10, 6), (12, 8), (16, 16), (2, 14),
               (14, 6), (28, 28), (24, 32)]


@pytest.mark.parametrize(("height", "width"), EVEN_SHAPES + [layout.grid_shape(765, 4), layout.grid_shape(2000, 8)])
def test_gilbert_curve_visits_every_pixel_once_with_unit_steps(height: int, width: int) -> None:
    order = layout.gilbert_curve(height, width)
    assert order.shape == (height * width,)
    np.testing.assert_array_equal(np.sort(order), np.arange(height * width))
    rows, cols = np.divmod(order, width)
    steps = np.abs(np.diff(rows)) + np.abs(np.diff(cols))
    assert (steps == 1).all()


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 7), (5, 3), (3, 9), (7, 7)])
def test_gilbert_curve_is_a_permutation_for_odd_sides(height: int, width: int) -> None:
    order = layout.gilbert_curve(height, width)
    np.testing.assert_array_equal(np.sort(order), np.arange(height * width))


# --- to_grid / from_grid ----------------------------------------------------------------


@pytest.fixture
def expression() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.poisson(1.0, size=(25, 37)).astype(np.float32) * rng.random((25, 37)).astype(np.float32)
    return x


@pytest.mark.parametrize("strategy", ["given", "random", "correlation"])
@pytest.mark.parametrize("sparse", [False, True])
def test_grid_round_trip_is_exact(expression: np.ndarray, strategy: str, sparse: bool) -> None:
    names = [f"g{i}" for i in range(expression.shape[1])]
    lay = layout.compute_layout(expression, names, strategy=strategy, divisor=4, seed=3)
    layout.validate_layout(lay)
    height, width = lay["shape"]
    assert (height, width) == layout.grid_shape(37, 4)

    data = sp.csr_matrix(expression) if sparse else expression
    grid = layout.to_grid(data, lay)
    assert grid.shape == (25, 1, height, width)
    assert grid.dtype == np.float32
    np.testing.assert_array_equal(layout.from_grid(grid, lay), expression)
    np.testing.assert_array_equal(layout.from_grid(grid[:, 0], lay), expression)  # (n, H, W) too

    # Each gene sits on its pixel; pixels without a gene are zero padding.
    flat = grid.reshape(25, height * width)
    gene = 5
    np.testing.assert_array_equal(flat[:, lay["positions"][gene]], expression[:, gene])
    padding = np.setdiff1d(np.arange(height * width), lay["positions"])
    assert padding.size == height * width - 37
    assert (flat[:, padding] == 0).all()


def test_from_grid_uses_channel_zero(expression: np.ndarray) -> None:
    lay = layout.compute_layout(expression, [f"g{i}" for i in range(37)], strategy="given", divisor=2)
    grid = layout.to_grid(expression, lay)
    two_channels = np.concatenate([grid, grid + 100], axis=1)
    np.testing.assert_array_equal(layout.from_grid(two_channels, lay), expression)


def test_grid_shape_mismatches_raise(expression: np.ndarray) -> None:
    lay = layout.compute_layout(expression, [f"g{i}" for i in range(37)], strategy="given", divisor=4)
    with pytest.raises(ValueError, match="genes"):
        layout.to_grid(expression[:, :30], lay)
    with pytest.raises(ValueError, match="grid"):
        layout.from_grid(np.zeros((2, 1, 3, 3), dtype=np.float32), lay)


def test_layout_is_plain_json(expression: np.ndarray) -> None:
    names = [f"g{i}" for i in range(37)]
    lay = layout.compute_layout(expression, names, strategy="correlation", divisor=4)
    again = json.loads(json.dumps(lay))
    assert again == lay
    assert again["genes"] == names
    assert again["strategy"] == "correlation"
    layout.validate_layout(again)


# --- strategies ----------------------------------------------------------------------


def _block_correlated(n_cells: int = 400, n_blocks: int = 8, block: int = 8, seed: int = 0):
    """Genes in blocks that share a latent factor; file order shuffled. Returns X, block id per column."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n_cells, n_blocks))
    block_of = np.repeat(np.arange(n_blocks), block)
    x = factors[:, block_of] + 0.5 * rng.normal(size=(n_cells, n_blocks * block))
    perm = rng.permutation(x.shape[1])
    return x[:, perm], block_of[perm]


def _mean_pair_distance(lay: dict, block_of: np.ndarray) -> float:
    rows, cols = np.divmod(np.asarray(lay["positions"]), lay["shape"][1])
    dists = [
        abs(rows[i] - rows[j]) + abs(cols[i] - cols[j])
        for i, j in itertools.combinations(range(len(block_of)), 2)
        if block_of[i] == block_of[j]
    ]
    return float(np.mean(dists))


def test_correlation_layout_puts_correlated_genes_close() -> None:
    x, block_of = _block_correlated()
    names = [f"g{i}" for i in range(x.shape[1])]
    dist = {
        strategy: _mean_pair_distance(layout.compute_layout(x, names, strategy=strategy, divisor=4), block_of)
        for strategy in ("given", "random", "correlation")
    }
    assert dist["correlation"] < 0.6 * dist["random"], dist
    assert dist["correlation"] < 0.6 * dist["given"], dist
    # Sparse input gives the same layout.
    sparse = layout.compute_layout(sp.csr_matrix(x), names, strategy="correlation", divisor=4)
    assert _mean_pair_distance(sparse, block_of) == pytest.approx(dist["correlation"])


@pytest.mark.parametrize("sparse", [False, True])
def test_gene_correlation_matches_numpy(sparse: bool) -> None:
    x, _ = _block_correlated(n_cells=100, n_blocks=3, block=4)
    x = np.clip(x, 0, None)  # sparse-ish
    x[:, 0] = 0.0  # a constant gene: correlation 0 with the others, 1 with itself
    corr = layout._gene_correlation(sp.csr_matrix(x) if sparse else x)
    expected = np.corrcoef(x[:, 1:].T)
    np.testing.assert_allclose(corr[1:, 1:], expected, atol=1e-10)
    assert corr[0, 0] == 1.0 and (corr[0, 1:] == 0).all()


def test_given_and_random_strategies() -> None:
    x = np.zeros((3, 10))
    names = [f"g{i}" for i in range(10)]
    given = layout.compute_layout(x, names, strategy="given", divisor=2)
    assert given["positions"] == list(range(10))
    random1 = layout.compute_layout(x, names, strategy="random", divisor=2, seed=1)
    assert sorted(random1["positions"]) == list(range(10))
    assert random1 == layout.compute_layout(x, names, strategy="random", divisor=2, seed=1)
    assert random1["positions"] != layout.compute_layout(x, names, strategy="random", divisor=2, seed=2)["positions"]


def test_unknown_strategy_names_the_parameter() -> None:
    with pytest.raises(ValueError, match=r"layout\.strategy"):
        layout.compute_layout(np.zeros((3, 4)), list("abcd"), strategy="umap")


def test_gene_name_count_must_match() -> None:
    with pytest.raises(ValueError, match="gene names"):
        layout.compute_layout(np.zeros((3, 4)), list("abc"), strategy="given")


# --- validate_layout -------------------------------------------------------------------


def _valid() -> dict:
    return {"genes": ["a", "b", "c"], "positions": [0, 5, 3], "shape": [2, 4], "strategy": "given"}


def test_validate_layout_accepts_valid() -> None:
    layout.validate_layout(_valid())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"positions": [0, 5, 5]}, "share a pixel"),
        ({"positions": [0, 5, 8]}, "outside"),
        ({"positions": [-1, 5, 3]}, "outside"),
        ({"positions": [0, 5]}, "differ in length"),
    ],
)
def test_validate_layout_rejects(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        layout.validate_layout({**_valid(), **change})


def test_validate_layout_requires_keys() -> None:
    broken = _valid()
    del broken["shape"]
    with pytest.raises(ValueError, match="shape"):
        layout.validate_layout(broken)


def test_spacing_spreads_the_genes_over_a_larger_grid() -> None:
    x = np.random.default_rng(0).poisson(1.0, size=(40, 100)).astype(float)
    names = [f"g{i}" for i in range(100)]
    tight = layout.compute_layout(x, names, divisor=4)
    spaced = layout.compute_layout(x, names, divisor=4, spacing=2.0)
    assert tight["shape"] == [12, 12] and spaced["shape"] == [16, 16]  # 100 and 200 genes' worth of pixels
    assert len(set(spaced["positions"])) == 100
    # The same gene order, every gene two or three steps further along the curve than the one before it.
    step = np.argsort(layout.gilbert_curve(16, 16))[spaced["positions"]]
    tight_step = np.argsort(layout.gilbert_curve(12, 12))[tight["positions"]]
    assert np.argsort(step).tolist() == np.argsort(tight_step).tolist()
    assert set(np.diff(np.sort(step))) == {2, 3}
    assert np.argsort(spaced["positions"]).tolist() != list(range(100))  # the correlation order, not the given one
    with pytest.raises(ValueError, match=r"layout\.spacing"):
        layout.compute_layout(x, names, spacing=0.5)
