"""Held-out mask, MCV split and training masks."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scgapfill.data import masks


@pytest.fixture
def counts():
    rng = np.random.default_rng(3)
    dense = rng.poisson(rng.gamma(0.5, 2.0, size=(60, 40))).astype(float)
    return sp.csr_matrix(dense)


def test_heldout_mask_takes_the_fraction_of_nonzeros(counts):
    mask = masks.heldout_mask(counts, fraction=0.2, seed=1)
    assert mask.nnz == round(0.2 * counts.nnz)
    rows, cols = mask.nonzero()
    assert (counts[rows, cols] > 0).all(), "held-out entries must be nonzero counts"


def test_heldout_mask_is_seeded(counts):
    a, b = masks.heldout_mask(counts, 0.1, seed=5), masks.heldout_mask(counts, 0.1, seed=5)
    c = masks.heldout_mask(counts, 0.1, seed=6)
    assert (a != b).nnz == 0
    assert (a != c).nnz > 0


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_heldout_mask_rejects_bad_fraction(counts, fraction):
    with pytest.raises(ValueError, match="heldout.fraction"):
        masks.heldout_mask(counts, fraction)


def test_apply_mask_zeroes_exactly_the_masked_entries(counts):
    mask = masks.heldout_mask(counts, 0.3, seed=0)
    masked = masks.apply_mask(counts, mask)
    rows, cols = mask.nonzero()
    assert masked[rows, cols].sum() == 0
    untouched = counts - counts.multiply(mask.astype(bool))
    assert abs(masked - untouched).sum() == 0
    assert masked.nnz == counts.nnz - mask.nnz  # zeros are dropped from the structure
    assert counts[rows, cols].sum() > 0, "the input must not be modified"


def test_masked_values_returns_truth_in_mask_order(counts):
    mask = masks.heldout_mask(counts, 0.3, seed=0)
    rows, cols, values = masks.masked_values(counts, mask)
    dense = counts.toarray()
    np.testing.assert_array_equal(values, dense[rows, cols])


def test_mcv_split_conserves_every_molecule(counts):
    train, test = masks.mcv_split(counts, 0.9, seed=0)
    assert abs((train + test) - counts).sum() == 0
    assert train.min() >= 0 and test.min() >= 0
    # Binomial thinning: about 90% of the molecules go to train.
    assert train.sum() / counts.sum() == pytest.approx(0.9, abs=0.02)


def test_mcv_split_is_seeded_and_needs_integers(counts):
    a, _ = masks.mcv_split(counts, 0.9, seed=2)
    b, _ = masks.mcv_split(counts, 0.9, seed=2)
    assert (a != b).nnz == 0
    with pytest.raises(ValueError, match="integer counts"):
        masks.mcv_split(counts * 0.5 + counts.multiply(0.01), 0.9)


def test_training_mask_rate_lies_in_range_and_skips_padding():
    values = torch.rand(64, 1, 16, 16)
    valid = torch.zeros_like(values, dtype=torch.bool)
    valid[..., :12, :] = True  # the last rows are grid padding
    gen = torch.Generator().manual_seed(0)
    rates = []
    for _ in range(50):
        mask = masks.sample_training_mask(values, valid, 0.1, 0.3, "uniform", gen)
        assert not mask[~valid].any(), "padding pixels must never be masked"
        rates.append(mask[valid].float().mean().item())
    assert 0.08 < min(rates) and max(rates) < 0.32
    assert max(rates) - min(rates) > 0.05, "the rate must be drawn per batch"


def test_dropout_mode_hides_low_values_more_often():
    values = torch.cat([torch.zeros(2000), torch.full((2000,), 3.0)]).reshape(1, 1, 40, 100)
    valid = torch.ones_like(values, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    mask = masks.sample_training_mask(values, valid, 0.2, 0.2, "dropout", gen).reshape(-1)
    low, high = mask[:2000].float().mean(), mask[2000:].float().mean()
    assert low > 3 * high
    assert mask.float().mean() == pytest.approx(0.2, abs=0.03)


def test_training_mask_is_reproducible_with_a_seeded_generator():
    values = torch.rand(8, 1, 8, 8)
    valid = torch.ones_like(values, dtype=torch.bool)
    a = masks.sample_training_mask(values, valid, generator=torch.Generator().manual_seed(4))
    b = masks.sample_training_mask(values, valid, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


def test_training_mask_rejects_bad_parameters():
    values = torch.rand(2, 1, 4, 4)
    valid = torch.ones_like(values, dtype=torch.bool)
    with pytest.raises(ValueError, match="min_rate"):
        masks.sample_training_mask(values, valid, 0.6, 0.2)
    with pytest.raises(ValueError, match="training_mask.mode"):
        masks.sample_training_mask(values, valid, mode="gaussian")


def _grid_counts(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    counts = torch.poisson(torch.full((64, 1, 16, 16), 3.0), generator=gen)
    valid = torch.zeros_like(counts, dtype=torch.bool)
    valid[..., :12, :] = True  # the last rows are grid padding
    return counts, valid


def test_molecule_split_conserves_molecules_and_shares_none():
    counts, valid = _grid_counts()
    inputs, target, fraction = masks.split_training_molecules(
        counts, valid, 0.1, 0.3, generator=torch.Generator().manual_seed(0)
    )
    # Every molecule of a gene's entry goes to exactly one side: input + target = counts, both >= 0.
    assert torch.equal(inputs + target, counts * valid)
    assert (inputs >= 0).all() and (target >= 0).all()
    assert torch.equal(inputs, inputs.round()) and torch.equal(target, target.round())
    # Padding holds no molecule on either side.
    assert not inputs[~valid].any() and not target[~valid].any()
    # One input fraction per cell, in [1 - max_rate, 1 - min_rate], and it is what the cell got.
    assert fraction.shape == (64, 1, 1, 1)
    assert ((fraction >= 0.7) & (fraction <= 0.9)).all()
    assert fraction.std() > 0.03, "the fraction must be drawn per cell, not per batch"
    share = inputs.sum(dim=(1, 2, 3)) / (counts * valid).sum(dim=(1, 2, 3))
    assert torch.allclose(share, fraction.view(-1), atol=0.05)


def test_molecule_split_is_seeded():
    counts, valid = _grid_counts()
    a = masks.split_training_molecules(counts, valid, generator=torch.Generator().manual_seed(4))
    b = masks.split_training_molecules(counts, valid, generator=torch.Generator().manual_seed(4))
    c = masks.split_training_molecules(counts, valid, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    with pytest.raises(ValueError, match="min_rate"):
        masks.split_training_molecules(counts, valid, 0.6, 0.2)
    # The entry masks do not take the molecule mode: it splits counts, not entries.
    with pytest.raises(ValueError, match="split_training_molecules"):
        masks.sample_training_mask(counts, valid, mode="molecules")
