import numpy as np
import pytest
import scipy.sparse as sp

from scgapfill.data.normalization import check_counts, counts_from_lognorm, lognorm, size_factors

COUNTS = np.array([[1.0, 0.0, 3.0], [0.0, 2.0, 0.0], [5.0, 5.0, 0.0]])


def test_size_factors_dense_and_sparse_are_row_sums():
    expected = np.array([4.0, 2.0, 10.0])
    np.testing.assert_array_equal(size_factors(COUNTS), expected)
    sf = size_factors(sp.csr_matrix(COUNTS))
    np.testing.assert_array_equal(sf, expected)
    assert sf.dtype == np.float64 and sf.shape == (3,)


def test_size_factors_names_empty_cells():
    counts = COUNTS.copy()
    counts[[0, 2]] = 0
    with pytest.raises(ValueError, match=r"cell\(s\) 0, 2 have no counts.*min_genes"):
        size_factors(sp.csr_matrix(counts))


def test_size_factors_rejects_negative_and_1d():
    with pytest.raises(ValueError, match="negative"):
        size_factors(-COUNTS)
    with pytest.raises(ValueError, match="2-D"):
        size_factors(np.ones(3))


def test_lognorm_hand_values():
    sf = np.array([4.0, 2.0, 10.0])
    out = lognorm(COUNTS, sf, target_sum=100)
    # cell 0: 1/4*100 = 25, 3/4*100 = 75; cell 1: 2/2*100 = 100; cell 2: 5/10*100 = 50
    expected = np.array(
        [[np.log(26), 0, np.log(76)], [0, np.log(101), 0], [np.log(51), np.log(51), 0]]
    )
    np.testing.assert_allclose(out, expected)
    assert isinstance(out, np.ndarray)


def test_lognorm_default_target_is_1e4():
    out = lognorm(np.array([[1.0, 1.0]]), np.array([2.0]))
    np.testing.assert_allclose(out, np.log1p([[5000.0, 5000.0]]))


def test_lognorm_keeps_sparse_csr_and_matches_dense():
    sf = size_factors(COUNTS)
    out = lognorm(sp.csr_matrix(COUNTS), sf)
    assert sp.issparse(out) and out.format == "csr"
    np.testing.assert_allclose(out.toarray(), lognorm(COUNTS, sf))
    out_csc = lognorm(sp.csc_matrix(COUNTS), sf)
    assert out_csc.format == "csr"
    np.testing.assert_allclose(out_csc.toarray(), lognorm(COUNTS, sf))


def test_lognorm_does_not_modify_input():
    matrix = sp.csr_matrix(COUNTS)
    lognorm(matrix, size_factors(matrix))
    np.testing.assert_array_equal(matrix.toarray(), COUNTS)


def test_counts_from_lognorm_inverts_lognorm():
    sf = size_factors(COUNTS)
    back = counts_from_lognorm(lognorm(sp.csr_matrix(COUNTS), sf), sf)
    assert isinstance(back, np.ndarray)
    np.testing.assert_allclose(back, COUNTS, atol=1e-10)
    np.testing.assert_allclose(counts_from_lognorm(np.log1p([[100.0]]), [2.0], target_sum=100), [[2.0]])


@pytest.mark.parametrize(
    ("sf", "message"),
    [(np.array([1.0, 2.0]), "shape"), (np.array([1.0, 0.0, 2.0]), "> 0"), (np.array([1.0, np.nan, 1.0]), "> 0")],
)
def test_lognorm_rejects_bad_size_factors(sf, message):
    with pytest.raises(ValueError, match=message):
        lognorm(COUNTS, sf)


def test_lognorm_rejects_bad_target_and_log_values():
    with pytest.raises(ValueError, match="target_sum"):
        lognorm(COUNTS, size_factors(COUNTS), target_sum=0)
    with pytest.raises(ValueError, match="negative"):
        lognorm(COUNTS - 2, np.ones(3))


def test_check_counts_drops_explicit_zeros():
    matrix = sp.csr_matrix((np.array([0.0, 2.0]), np.array([0, 1]), np.array([0, 2])), shape=(1, 2))
    out = check_counts(matrix)
    assert out.nnz == 1 and out.dtype == np.float64
    assert matrix.nnz == 2  # input untouched
    with pytest.raises(ValueError, match="numpy array or a scipy.sparse"):
        check_counts([[1, 2]])


def test_as_composition_sums_each_cell_to_the_target_and_keeps_shares():
    from scgapfill.data.normalization import as_composition

    levels = np.array([[1.0, 3.0, 0.0], [5.0, 5.0, 10.0], [0.0, 0.0, 0.0]])
    values = np.log1p(levels).astype(np.float32)
    out = as_composition(values, target_sum=1e4)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.expm1(out[:2].astype(np.float64)).sum(axis=1), 1e4, rtol=1e-5)
    np.testing.assert_allclose(np.expm1(out[0].astype(np.float64)), [2500.0, 7500.0, 0.0], rtol=1e-5)
    np.testing.assert_array_equal(out[2], 0.0)  # an empty cell stays empty
    with pytest.raises(ValueError, match="target_sum"):
        as_composition(values, target_sum=0)


def test_lognorm_in_place_transforms_the_callers_own_float64_copy():
    counts = sp.csr_matrix(np.array([[1.0, 0.0, 3.0], [0.0, 2.0, 2.0]]))
    expected = lognorm(counts, size_factors(counts)).toarray()
    own = counts.copy()
    out = lognorm(own, size_factors(own), copy=False)
    assert out.data is own.data or np.shares_memory(out.data, own.data)
    np.testing.assert_array_equal(out.toarray(), expected)
    # Any other input is still copied: float32 cannot hold the float64 result in place.
    single = sp.csr_matrix(counts, dtype=np.float32)
    lognorm(single, size_factors(single), copy=False)
    np.testing.assert_array_equal(single.toarray(), counts.toarray())


def test_expected_log_of_levels_puts_levels_at_their_depth_and_logs_at_the_cells():
    from scgapfill.data.normalization import expected_log_of_levels, expected_lognorm

    rng = np.random.default_rng(0)
    levels = np.log1p(rng.gamma(1.0, 50.0, size=(7, 5)))
    level_depth = np.array([100.0, 400.0, 50.0, 1000.0, 20.0, 300.0, 0.0])
    depth = level_depth * 2
    out = expected_log_of_levels(levels, level_depth, depth, block_rows=3)
    live = slice(0, 6)
    want = expected_lognorm(np.expm1(levels[live]) * level_depth[live, None] / 1e4, depth[live, None])
    np.testing.assert_allclose(out[live], want, rtol=1e-6)
    assert out.dtype == np.float32 and (out[6] == 0).all()  # no depth, nothing to estimate
    same = expected_log_of_levels(levels[live], level_depth[live])
    np.testing.assert_allclose(same, expected_lognorm(np.expm1(levels[live]) * level_depth[live, None] / 1e4,
                                                      level_depth[live, None]), rtol=1e-6)
