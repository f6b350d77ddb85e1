"""The gap-filling loss: masked MSE/MAE, count likelihoods (Poisson, negative binomial, zero-inflated
Poisson), total variation and an optional SSIM term.

All functions take ``(n, 1, H, W)`` grids. ``valid`` marks pixels that hold a
gene (the rest is padding) and broadcasts against the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from scgapfill.params import LossParams


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # clamp: a batch can have no masked entry (rate ~ 0); its term is then 0, not NaN.
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries where ``mask`` is true (0 if there are none)."""
    weight = mask.expand_as(pred).to(pred.dtype)
    return _weighted_mean((pred - target) ** 2, weight)


def masked_mae(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the entries where ``mask`` is true (0 if there are none)."""
    weight = mask.expand_as(pred).to(pred.dtype)
    return _weighted_mean((pred - target).abs(), weight)


def masked_poisson_nll(rate_pred: torch.Tensor, counts: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Poisson negative log-likelihood ``mu - c*log(mu)`` over the masked entries (0 if there are none).

    Its minimiser is ``mu = E[c]``: the expected count, not the expected log value, so the
    network's estimate of a gene's level does not sink in shallow cells, where zeros are common.
    """
    weight = mask.expand_as(rate_pred).to(rate_pred.dtype)
    return _weighted_mean(rate_pred - counts * torch.log(rate_pred + 1e-6), weight)


def masked_nb_nll(
    rate_pred: torch.Tensor, counts: torch.Tensor, log_theta: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Negative binomial negative log-likelihood over the masked entries (0 if there are none).

    ``log_theta`` is the log inverse dispersion, broadcast against the grid (one per gene).
    Like the Poisson term its minimiser is ``mu = E[c]``, but over-dispersed genes and cells
    weigh less, which the Poisson term cannot express (scVI and DCA use it for the same reason).
    """
    theta = log_theta.exp()
    mu = rate_pred + 1e-6
    log_mu_theta = torch.log(theta + mu)
    nll = (
        torch.lgamma(theta) + torch.lgamma(counts + 1.0) - torch.lgamma(counts + theta)
        - theta * (log_theta - log_mu_theta) - counts * (torch.log(mu) - log_mu_theta)
    )
    weight = mask.expand_as(rate_pred).to(rate_pred.dtype)
    return _weighted_mean(nll, weight)


def masked_zip_nll(
    rate_pred: torch.Tensor, counts: torch.Tensor, curve: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Zero-inflated Poisson negative log-likelihood over the masked entries (0 if there are none).

    ``rate_pred`` is the expected count *before* dropout; an entry drops out with probability
    ``sigmoid(curve[0] + curve[1] * log(rate))``: one logistic curve in the log mean for the whole
    data set (the dropout model of Splatter, and the Michaelis-Menten curve of M3Drop when
    ``curve[1] = -1``). The network's output is then the expression level absent dropout.
    """
    mu = rate_pred + 1e-6
    logit = curve[0] + curve[1] * torch.log(mu)
    log_keep = F.logsigmoid(-logit)
    log_poisson = counts * torch.log(mu) - mu - torch.lgamma(counts + 1.0)
    log_zero = torch.logaddexp(F.logsigmoid(logit), log_keep - mu)
    nll = -torch.where(counts > 0, log_keep + log_poisson, log_zero)
    weight = mask.expand_as(rate_pred).to(rate_pred.dtype)
    return _weighted_mean(nll, weight)


def total_variation(grid: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute difference of horizontally and vertically adjacent pixels.

    Parameters
    ----------
    grid
        ``(n, C, H, W)``.
    valid
        Optional pixel mask; a pair counts only when both pixels are valid, so
        padding never pulls a gene's value.

    Returns
    -------
    Scalar: sum of ``|x[i, j+1] - x[i, j]|`` and ``|x[i+1, j] - x[i, j]|`` over the
    counted pairs, divided by the number of counted pairs.
    """
    if valid is None:
        valid = torch.ones_like(grid, dtype=torch.bool)
    valid = valid.expand_as(grid).to(grid.dtype)
    horizontal = (grid[..., :, 1:] - grid[..., :, :-1]).abs()
    vertical = (grid[..., 1:, :] - grid[..., :-1, :]).abs()
    pair_h = valid[..., :, 1:] * valid[..., :, :-1]
    pair_v = valid[..., 1:, :] * valid[..., :-1, :]
    total = (horizontal * pair_h).sum() + (vertical * pair_v).sum()
    return total / (pair_h.sum() + pair_v.sum()).clamp(min=1.0)


def ssim(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, window: int = 7) -> torch.Tensor:
    """Mean structural similarity of two grids in [0, 1] (uniform window, data range 1).

    Padding pixels are zeroed in both grids first, so they agree and add no signal.
    The window shrinks to the grid when the grid is smaller.
    """
    if valid is not None:
        keep = valid.expand_as(pred).to(pred.dtype)
        pred, target = pred * keep, target * keep
    size = max(1, min(window, pred.shape[-2], pred.shape[-1]))
    c1, c2 = 0.01**2, 0.03**2

    def local_mean(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, size, stride=1)

    mu_p, mu_t = local_mean(pred), local_mean(target)
    var_p = local_mean(pred * pred) - mu_p**2
    var_t = local_mean(target * target) - mu_t**2
    cov = local_mean(pred * target) - mu_p * mu_t
    score = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return score.mean()


def loss_terms(
    pred: torch.Tensor,
    target: torch.Tensor,
    train_mask: torch.Tensor,
    valid: torch.Tensor,
    loss_params: LossParams,
    to_counts: Any = None,
    log_theta: torch.Tensor | None = None,
    dropout_curve: torch.Tensor | None = None,
    target_counts: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Every term of :func:`gapfill_loss` and their weighted sum under ``"loss"``.

    Parameters
    ----------
    pred, target
        ``(n, 1, H, W)``; ``target`` is the unmasked scaled grid.
    train_mask
        Boolean, true where the entry was hidden from the network.
    valid
        Boolean, true where a pixel holds a gene.
    loss_params
        The term weights, :class:`scgapfill.params.LossParams` (``alpha``, ``beta``, ``gamma``, ``ssim``,
        ``poisson``, ``nb``, ``zip``, ``unmasked_weight``).
    to_counts
        Maps a scaled grid to expected counts (needed when ``poisson``, ``nb`` or ``zip`` > 0).
    log_theta
        Per-gene log inverse dispersion grid (needed when ``nb`` > 0).
    dropout_curve
        ``(2,)`` intercept and slope of the dropout curve in the log expected count (needed when
        ``zip`` > 0); see :func:`masked_zip_nll`.
    target_counts
        The counts the count terms score, shaped like ``pred``; by default ``to_counts(target)``
        rounded. The molecule split (``training_mask.mode: molecules``) gives its target molecules
        here, with ``to_counts`` mapping the prediction to the target's depth.
    """
    # Losses in float32 even under bf16 autocast: small differences matter here.
    pred, target = pred.float(), target.float()
    valid = valid.expand_as(pred).bool()
    hidden = train_mask.bool() & valid
    visible = valid & ~hidden
    alpha, beta, gamma = loss_params.alpha, loss_params.beta, loss_params.gamma
    ssim_weight, unmasked = loss_params.ssim, loss_params.unmasked_weight
    poisson, nb, zip_ = loss_params.poisson, loss_params.nb, loss_params.zip
    zero = pred.new_zeros(())
    if (poisson or nb or zip_) and to_counts is None:
        raise ValueError("the poisson, nb and zip loss terms need to_counts (size factors and gene scales)")
    if nb and log_theta is None:
        raise ValueError("the nb loss term needs log_theta (the per-gene log inverse dispersion)")
    if zip_ and dropout_curve is None:
        raise ValueError("the zip loss term needs dropout_curve (the two parameters of the dropout curve)")

    def scored(term: Any) -> torch.Tensor:
        """``term`` (a function of an entry mask) on the hidden entries, plus ``unmasked_weight`` x the visible."""
        return term(hidden) + (unmasked * term(visible) if unmasked else zero)

    terms = {
        "mse": scored(lambda entries: masked_mse(pred, target, entries)),
        "mae": scored(lambda entries: masked_mae(pred, target, entries)),
        "tv": total_variation(pred, valid) if gamma else zero,
        "ssim": 1.0 - ssim(pred, target, valid) if ssim_weight else zero,
        "poisson": zero,
        "nb": zero,
        "zip": zero,
    }
    if poisson or nb or zip_:
        mu = to_counts(pred)
        counts = to_counts(target).round() if target_counts is None else target_counts.float()
    if poisson:
        terms["poisson"] = scored(lambda entries: masked_poisson_nll(mu, counts, entries))
    if nb:
        terms["nb"] = scored(lambda entries: masked_nb_nll(mu, counts, log_theta, entries))
    if zip_:
        terms["zip"] = scored(lambda entries: masked_zip_nll(mu, counts, dropout_curve, entries))
    terms["loss"] = (
        alpha * terms["mse"] + beta * terms["mae"] + gamma * terms["tv"] + ssim_weight * terms["ssim"]
        + poisson * terms["poisson"] + nb * terms["nb"] + zip_ * terms["zip"]
    )
    return terms


def gapfill_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    train_mask: torch.Tensor,
    valid: torch.Tensor,
    loss_params: LossParams,
    to_counts: Any = None,
    log_theta: torch.Tensor | None = None,
    dropout_curve: torch.Tensor | None = None,
    target_counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """``alpha*MSE + beta*MAE + gamma*TV + ssim*(1 - SSIM) + poisson*PoissonNLL + nb*NegBinNLL + zip*ZIPNLL``.

    MSE and MAE are taken over the training-masked entries, plus
    ``unmasked_weight`` times the same over the visible valid entries. See
    :func:`loss_terms` for the parameters.
    """
    return loss_terms(pred, target, train_mask, valid, loss_params, to_counts, log_theta, dropout_curve,
                      target_counts)["loss"]
