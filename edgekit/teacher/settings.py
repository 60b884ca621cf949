"""The teacher's pretraining settings (see edgekit.settings), in a module without torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgekit_runtime.errors import UserError

from ..settings import setting


@dataclass(frozen=True)
class MaskSettings:
    """Which tokens masked reconstruction learns from (options and recipe keys mask_*)."""
    prob: float = setting(0.5, "Share of observed tokens in the loss.")
    random: float = setting(0.2, "Of those (not kept): share given random values.")
    keep: float = setting(0.2, "Of those: share keeping their true value.")
    span: int = setting(1, "Mask contiguous runs of this many tokens.")

    def __post_init__(self):
        for name in ("prob", "random", "keep"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise UserError(f"mask {name} must be in [0, 1], got {v}")
        if self.span < 1:
            raise UserError("mask span must be >= 1")


@dataclass(frozen=True)
class PretrainSettings:
    steps: int = setting(2000, "Optimiser steps.", minimum=1)
    tokens_per_step: int = setting(4096, "Tokens (patches of one channel) per batch.", minimum=1)
    max_tokens: int = setting(64, "Longer windows are seen in random crops of this many tokens.", minimum=1)
    lr: float = setting(1e-3, "Peak learning rate.")
    weight_decay: float = setting(0.01, "AdamW weight decay.")
    warmup: int = setting(100, "Linear warm-up steps, then cosine decay.")
    eval_every: int = setting(100, "Steps between validation RMSE measurements.", minimum=1)
    checkpoint_every: int = setting(500, "Steps between checkpoints a killed run resumes from.", minimum=1)
    seed: int = setting(0, "Seed for the split, initialisation and batches.")
    use_mask_token: bool = True  # off: masked values are zeroed instead (ablation; no option)
    use_uncertainty: bool = True  # off: uniform loss weights (ablation; no option)
    mask: MaskSettings = field(default_factory=MaskSettings)
