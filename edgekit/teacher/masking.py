"""Masking for pretraining, BERT/Astromer style.

A share `prob` of the observed tokens is selected for the loss. Of the selected tokens, a share `keep` keeps its
true value, a share `random` of the rest gets the value of another random observed token of the same window, and
the remainder gets the MASK token. With `span` > 1 tokens are selected in contiguous runs of that length (harder:
the model cannot interpolate from direct neighbours), with the same expected share.
Astromer 2's setting: prob 0.5, keep 0.2, random 0.2.
"""

from __future__ import annotations

import torch

from .settings import MaskSettings


def make_masks(observed: torch.Tensor, s: MaskSettings, gen: torch.Generator):
    """observed [B, L] -> (loss [B, L], mask_token [B, L], randomised [B, L]) boolean masks."""
    b, n = observed.shape
    if s.span == 1:
        selected = torch.rand(b, n, generator=gen) < s.prob
    else:
        # a token is covered when it or one of the span-1 tokens before it starts a span:
        # P(covered) = 1 - (1 - q)^span = prob  =>  q = 1 - (1 - prob)^(1/span)
        starts = torch.rand(b, n, generator=gen) < 1 - (1 - s.prob) ** (1 / s.span)
        padded = torch.nn.functional.pad(starts.float()[:, None], (s.span - 1, 0))
        selected = torch.nn.functional.max_pool1d(padded, s.span, 1)[:, 0] > 0
    selected &= observed
    u = torch.rand(b, n, generator=gen)
    keep = selected & (u < s.keep)
    randomised = selected & ~keep & (u < s.keep + (1 - s.keep) * s.random)
    mask_token = selected & ~keep & ~randomised
    return selected, mask_token, randomised


def apply_random(tokens: torch.Tensor, observed: torch.Tensor, randomised: torch.Tensor, gen: torch.Generator):
    """Replace the values of `randomised` tokens with those of random observed tokens of the same window."""
    b, n, _ = tokens.shape
    weights = observed.float() + 1e-9  # windows are validated to hold observed tokens
    src = torch.multinomial(weights, n, replacement=True, generator=gen)  # [B, L]
    shuffled = torch.gather(tokens, 1, src[..., None].expand_as(tokens))
    return torch.where(randomised[..., None], shuffled, tokens)
