"""Uncertainty-weighted masked reconstruction loss (Astromer 2).

For window i, value j (a channel of a time step) with normalised uncertainty σ_ij (the observation's standard
deviation divided by its channel's standard deviation), the weight is

    w_ij = (1/σ_ij − min_i 1/σ) / (max_i 1/σ − min_i 1/σ) + 1e-3

with min/max over the window's observed values only (padding never enters), so reliable observations count more
and noisy ones cannot drag the model. Without uncertainties every w_ij = 1. With m_ij = 1 on the values of tokens
selected for the loss (masked positions only):

    L = sqrt( mean_i [ Σ_j m_ij · w_ij · (x_ij − x̂_ij)² / Σ_j m_ij ] )

Windows with no selected value are left out of the mean.
"""

from __future__ import annotations

import torch


def uncertainty_weights(sigma: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """sigma [B, L, V] (> 0), observed [B, L] -> weights [B, L, V]."""
    inv = 1.0 / sigma
    obs = observed[..., None].expand_as(inv)
    big = torch.finfo(inv.dtype).max
    lo = torch.where(obs, inv, torch.full_like(inv, big)).flatten(1).amin(1)[:, None, None]
    hi = torch.where(obs, inv, torch.full_like(inv, -big)).flatten(1).amax(1)[:, None, None]
    span = (hi - lo).clamp_min(1e-12)
    return (inv - lo) / span + 1e-3


def masked_reconstruction_loss(pred, target, loss_mask, weights=None):
    """pred, target [B, L, V]; loss_mask [B, L]; weights [B, L, V] or None."""
    err = (pred - target) ** 2
    if weights is not None:
        err = err * weights
    m = loss_mask[..., None].to(err.dtype).expand_as(err)
    count = m.flatten(1).sum(1)
    per_window = (err * m).flatten(1).sum(1) / count.clamp_min(1)
    has = count > 0
    if not has.any():
        return pred.sum() * 0.0
    return torch.sqrt(per_window[has].mean())


def masked_rmse(pred, target, loss_mask) -> float:
    """Plain RMSE over all selected values (for reporting)."""
    m = loss_mask[..., None].expand_as(pred)
    return float(torch.sqrt(((pred - target)[m] ** 2).mean())) if m.any() else float("nan")
