"""The teacher's pretraining settings, in a module without torch so that the command line and recipes take their
defaults from here (one place) without loading torch."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MaskSettings:
    prob: float = 0.5
    random: float = 0.2
    keep: float = 0.2
    span: int = 1

    def __post_init__(self):
        for name in ("prob", "random", "keep"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"mask {name} must be in [0, 1], got {v}")
        if self.span < 1:
            raise ValueError("mask span must be >= 1")


@dataclass(frozen=True)
class PretrainSettings:
    steps: int = 2000
    tokens_per_step: int = 4096
    max_tokens: int = 64  # crop length in patches: longer windows are seen in random crops
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    eval_every: int = 100
    checkpoint_every: int = 500
    seed: int = 0
    use_mask_token: bool = True  # off: masked values are zeroed instead (ablation)
    use_uncertainty: bool = True  # off: uniform loss weights (ablation)
    mask: MaskSettings = field(default_factory=MaskSettings)
