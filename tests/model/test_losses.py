import numpy as np
import pytest
import torch

from scgapfill.nn import gapfill_loss, loss_terms, masked_mae, masked_mse, ssim, total_variation
from scgapfill.params import LossParams


def as_grid(rows):
    return torch.tensor(rows, dtype=torch.float32)[None, None]


def test_total_variation_by_hand_on_3x3():
    grid = as_grid([[0, 1, 3], [2, 2, 2], [5, 0, 1]])
    # horizontal |diffs|: 1 2 / 0 0 / 5 1 = 9; vertical: 2 1 1 / 3 2 1 = 10; 12 pairs
    assert total_variation(grid).item() == pytest.approx(19 / 12)


def test_total_variation_skips_pairs_touching_padding():
    grid = as_grid([[0, 1, 3], [2, 2, 2], [5, 0, 100]])
    valid = as_grid([[1, 1, 1], [1, 1, 1], [1, 1, 0]]).bool()
    # the (2,2) pixel is padding: drop |100-0| and |100-2|, and the pairs' count falls to 10
    # remaining horizontal: 1 2 0 0 5 = 8; vertical: 2 1 1 3 2 = 9
    assert total_variation(grid, valid).item() == pytest.approx(17 / 10)


def test_total_variation_of_constant_grid_is_zero():
    assert total_variation(torch.full((2, 1, 4, 4), 0.3)).item() == 0.0


def test_masked_errors_by_hand():
    pred = as_grid([[1.0, 2.0], [3.0, 4.0]])
    target = as_grid([[0.0, 0.0], [0.0, 0.0]])
    mask = as_grid([[1, 0], [0, 1]]).bool()
    assert masked_mse(pred, target, mask).item() == pytest.approx((1 + 16) / 2)
    assert masked_mae(pred, target, mask).item() == pytest.approx((1 + 4) / 2)


def test_empty_mask_gives_zero_not_nan():
    pred = torch.rand(1, 1, 4, 4)
    empty = torch.zeros_like(pred, dtype=torch.bool)
    assert masked_mse(pred, pred + 1, empty).item() == 0.0


def _setup():
    torch.manual_seed(0)
    pred = torch.rand(2, 1, 4, 4)
    target = torch.rand(2, 1, 4, 4)
    hidden = torch.rand(2, 1, 4, 4) < 0.3
    valid = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    valid[..., -1, -1] = False
    return pred, target, hidden, valid


def test_loss_ignores_unmasked_entries_when_unmasked_weight_is_zero():
    pred, target, hidden, valid = _setup()
    params = LossParams(alpha=1.0, beta=0.5, gamma=0.0, ssim=0.0, unmasked_weight=0.0, poisson=0.0, zip=0.0)
    before = gapfill_loss(pred, target, hidden, valid, params)
    changed = torch.where(hidden, pred, torch.rand_like(pred) * 10)
    assert not torch.equal(changed, pred)
    assert torch.equal(gapfill_loss(changed, target, hidden, valid, params), before)


def test_unmasked_weight_brings_visible_entries_in():
    pred, target, hidden, valid = _setup()
    params = LossParams(alpha=1.0, unmasked_weight=0.5, poisson=0.0, zip=0.0)
    changed = torch.where(hidden, pred, pred + 0.5)
    assert gapfill_loss(changed, target, hidden, valid, params) > gapfill_loss(pred, target, hidden, valid, params)


def test_loss_is_weighted_sum_of_terms():
    pred, target, hidden, valid = _setup()
    params = LossParams(alpha=2.0, beta=3.0, gamma=0.5, ssim=0.25, unmasked_weight=0.1, poisson=0.0, zip=0.0)
    terms = loss_terms(pred, target, hidden, valid, params)
    expected = 2 * terms["mse"] + 3 * terms["mae"] + 0.5 * terms["tv"] + 0.25 * terms["ssim"]
    assert terms["loss"].item() == pytest.approx(expected.item())
    assert terms["tv"].item() == pytest.approx(total_variation(pred, valid).item())


def test_ssim_of_identical_grids_is_one():
    pred, target, hidden, valid = _setup()
    assert ssim(target, target, valid).item() == pytest.approx(1.0)
    # The weights come typed (parsed once, upstream); a bundle's older loss section is upgraded as it is read.
    params = LossParams(alpha=1, beta=0, gamma=0, ssim=1, unmasked_weight=0, poisson=0, zip=0)
    loss = gapfill_loss(pred, target, hidden, valid, params)
    assert torch.isfinite(loss)


def test_loss_backpropagates():
    pred, target, hidden, valid = _setup()
    pred.requires_grad_(True)
    gapfill_loss(pred, target, hidden, valid, LossParams(beta=1.0, gamma=0.1, ssim=0.1, poisson=0.0, zip=0.0)).backward()
    assert torch.isfinite(pred.grad).all()


def test_poisson_term_is_minimised_by_the_expected_count():
    from scgapfill.nn.losses import masked_poisson_nll

    counts = torch.tensor([0.0, 0.0, 1.0, 3.0]).view(1, 1, 2, 2)
    mask = torch.ones_like(counts, dtype=torch.bool)
    candidates = torch.linspace(0.2, 3.0, 281)
    losses = [masked_poisson_nll(torch.full_like(counts, float(mu)), counts, mask).item() for mu in candidates]
    assert candidates[int(np.argmin(losses))].item() == pytest.approx(counts.mean().item(), abs=0.011)
    # hand-computed at mu = 1: mean(1 - c*log(1)) = 1
    assert masked_poisson_nll(torch.ones_like(counts), counts, mask).item() == pytest.approx(1.0, abs=1e-5)


def test_poisson_weight_adds_the_term_and_needs_a_count_map():
    pred = torch.full((1, 1, 2, 2), 0.5)
    target = torch.tensor([0.0, 0.2, 0.6, 1.0]).view(1, 1, 2, 2)
    mask = torch.ones_like(pred, dtype=torch.bool)
    params = LossParams(alpha=0.0, beta=0.0, gamma=0.0, ssim=0.0, poisson=1.0, zip=0.0, unmasked_weight=0.0)

    def to_counts(grid):
        return torch.expm1(grid * 4.0) * 500 / 1e4

    terms = loss_terms(pred, target, mask, mask, params, to_counts)
    mu, c = to_counts(pred), to_counts(target).round()
    assert terms["loss"].item() == pytest.approx((mu - c * torch.log(mu + 1e-6)).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="to_counts"):
        loss_terms(pred, target, mask, mask, params)


def test_nb_term_by_hand_and_minimised_by_the_expected_count():
    from scipy.stats import nbinom

    from scgapfill.nn.losses import masked_nb_nll

    counts = torch.tensor([0.0, 1.0, 2.0, 7.0]).view(1, 1, 2, 2)
    mask = torch.ones_like(counts, dtype=torch.bool)
    theta, mu = 2.5, 1.7
    log_theta = torch.full_like(counts, float(np.log(theta)))
    # scipy's nbinom(n, p) with n = theta, p = theta / (theta + mu) is the NB of mean mu.
    expected = -nbinom.logpmf(counts.numpy().ravel(), theta, theta / (theta + mu)).mean()
    got = masked_nb_nll(torch.full_like(counts, mu), counts, log_theta, mask).item()
    assert got == pytest.approx(expected, rel=1e-4)
    candidates = torch.linspace(0.5, 5.0, 451)
    losses = [masked_nb_nll(torch.full_like(counts, float(m)), counts, log_theta, mask).item() for m in candidates]
    assert candidates[int(np.argmin(losses))].item() == pytest.approx(counts.mean().item(), abs=0.011)


def test_nb_weight_needs_dispersions_and_trains_them():
    pred = torch.full((1, 1, 2, 2), 0.5, requires_grad=True)
    target = torch.tensor([0.0, 0.2, 0.6, 1.0]).view(1, 1, 2, 2)
    mask = torch.ones_like(target, dtype=torch.bool)
    params = LossParams(poisson=0.0, nb=1.0, zip=0.0)

    def to_counts(grid):
        return torch.expm1(grid * 4.0) * 500 / 1e4

    with pytest.raises(ValueError, match="log_theta"):
        loss_terms(pred, target, mask, mask, params, to_counts)
    log_theta = torch.zeros(1, 1, 2, 2, requires_grad=True)
    terms = loss_terms(pred, target, mask, mask, params, to_counts, log_theta)
    assert terms["loss"].item() == pytest.approx(terms["nb"].item()) and terms["poisson"].item() == 0.0
    terms["loss"].backward()
    assert log_theta.grad is not None and log_theta.grad.abs().sum() > 0


def test_zip_term_by_hand_and_its_curve_recovered_from_zero_inflated_counts():
    from scipy.stats import poisson

    from scgapfill.nn.losses import masked_zip_nll

    counts = torch.tensor([0.0, 1.0, 2.0, 7.0]).view(1, 1, 2, 2)
    mask = torch.ones_like(counts, dtype=torch.bool)
    mu, curve = 1.7, torch.tensor([0.3, -1.0])
    drop = 1.0 / (1.0 + np.exp(-(0.3 - np.log(mu))))
    c = counts.numpy().ravel()
    expected = -np.where(c > 0, np.log(1 - drop) + poisson.logpmf(c, mu), np.log(drop + (1 - drop) * np.exp(-mu)))
    got = masked_zip_nll(torch.full_like(counts, mu), counts, curve, mask).item()
    assert got == pytest.approx(expected.mean(), rel=1e-4)
    # Without dropout (logit -> -inf) it is the Poisson likelihood.
    no_drop = masked_zip_nll(torch.full_like(counts, mu), counts, torch.tensor([-40.0, 0.0]), mask).item()
    assert no_drop == pytest.approx(-poisson.logpmf(c, mu).mean(), rel=1e-4)

    # Counts drawn with a known curve: fitting the curve (means known) finds it, and a plain
    # Poisson fit of the same zeros would have put the means too low.
    gen = torch.Generator().manual_seed(0)
    means = torch.exp(torch.empty(1, 1, 100, 100).uniform_(-2.0, 3.0, generator=gen))
    true_curve = torch.tensor([0.5, -1.2])
    dropped = torch.rand(means.shape, generator=gen) < torch.sigmoid(true_curve[0] + true_curve[1] * means.log())
    sample = torch.poisson(means, generator=gen) * ~dropped
    fitted = torch.zeros(2, requires_grad=True)
    optimiser = torch.optim.Adam([fitted], lr=0.05)
    full = torch.ones_like(sample, dtype=torch.bool)
    for _ in range(400):
        optimiser.zero_grad()
        masked_zip_nll(means, sample, fitted, full).backward()
        optimiser.step()
    np.testing.assert_allclose(fitted.detach().numpy(), true_curve.numpy(), atol=0.15)


def test_zip_weight_needs_its_curve_and_trains_it():
    pred = torch.full((1, 1, 2, 2), 0.5, requires_grad=True)
    target = torch.tensor([0.0, 0.2, 0.6, 1.0]).view(1, 1, 2, 2)
    mask = torch.ones_like(target, dtype=torch.bool)
    params = LossParams(poisson=0.0, zip=1.0)

    def to_counts(grid):
        return torch.expm1(grid * 4.0) * 500 / 1e4

    with pytest.raises(ValueError, match="dropout_curve"):
        loss_terms(pred, target, mask, mask, params, to_counts)
    curve = torch.tensor([-3.0, 0.0], requires_grad=True)
    terms = loss_terms(pred, target, mask, mask, params, to_counts, dropout_curve=curve)
    assert terms["loss"].item() == pytest.approx(terms["zip"].item()) and terms["poisson"].item() == 0.0
    terms["loss"].backward()
    assert curve.grad is not None and curve.grad.abs().sum() > 0


def test_given_target_counts_are_what_the_count_terms_score():
    # The molecule split scores its target molecules, not the counts behind the target grid.
    pred = torch.full((1, 1, 2, 2), 0.5)
    target = torch.tensor([0.0, 0.2, 0.6, 1.0]).view(1, 1, 2, 2)
    molecules = torch.tensor([2.0, 0.0, 1.0, 4.0]).view(1, 1, 2, 2)
    everything = torch.ones_like(pred, dtype=torch.bool)
    params = LossParams(alpha=0.0, beta=0.0, gamma=0.0, ssim=0.0, poisson=1.0, zip=0.0, unmasked_weight=0.0)

    def to_counts(grid):
        return torch.expm1(grid * 4.0) * 500 / 1e4

    mu = to_counts(pred)
    by_hand = (mu - molecules * torch.log(mu + 1e-6)).mean().item()
    terms = loss_terms(pred, target, everything, everything, params, to_counts, target_counts=molecules)
    assert terms["poisson"].item() == pytest.approx(by_hand, rel=1e-5)
    assert gapfill_loss(pred, target, everything, everything, params, to_counts,
                        target_counts=molecules).item() == pytest.approx(by_hand, rel=1e-5)
    # Without them, the counts of the target grid: a different loss.
    assert loss_terms(pred, target, everything, everything, params, to_counts)["poisson"].item() != pytest.approx(
        by_hand, rel=1e-3)
