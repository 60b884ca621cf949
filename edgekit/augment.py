"""Label-preserving augmentation of normalised sensor windows `[B, C, T]`, applied per training batch.

Each window gets its own draw of: a gain per channel (log-normal, sd `scale`: sensor gain and mounting vary),
additive Gaussian noise (sd `jitter`, in units of the normalised signal) and a time shift of up to `shift` of
the window, filled by repeating the edge sample (where in the window an event falls is rarely the label).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Augment:
    scale: float = 0.1
    jitter: float = 0.03
    shift: float = 0.1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.with_mask(x, None)[0]

    def with_mask(self, x: torch.Tensor, observed: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`x` augmented, and `observed` [B, T] (a teacher's mask of observed steps; None for none) shifted with
        it, so that a zero-filled gap stays marked as one. Timestamps stay: the signal moves along its time grid."""
        b, c, t = x.shape
        if self.scale:
            x = x * torch.exp(torch.randn(b, c, 1) * self.scale)
        if self.jitter:
            x = x + torch.randn_like(x) * self.jitter
        steps = int(self.shift * t)
        if steps:
            offset = torch.randint(-steps, steps + 1, (b, 1))
            index = (torch.arange(t)[None, :] - offset).clamp(0, t - 1)
            x = torch.gather(x, 2, index[:, None, :].expand(b, c, t))
            if observed is not None:
                observed = torch.gather(observed, 1, index)
        return x, observed
