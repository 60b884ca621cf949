"""The training recipe's settings, in a module without torch so that the command line can show its defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgekit_runtime.errors import UserError

from .settings import setting


@dataclass(frozen=True)
class TrainSettings:
    steps: int = setting(4000, "Optimiser steps; the epochs follow from the number of training windows.", minimum=1)
    epochs: int | None = setting(None, "A fixed number of epochs instead of --steps.", minimum=1)
    max_epochs: int = setting(1000, "Most epochs --steps may take on a small training set.", minimum=1)
    lr: float = setting(3e-3, "Peak learning rate (warm-up, then cosine decay).")
    weight_decay: float = setting(1e-2, "AdamW weight decay.")
    batch_size: int = setting(64, "Windows per batch.", minimum=2)
    warmup: float = setting(0.05, "Share of the steps with a linearly rising learning rate.")
    label_smoothing: float = setting(0.1, "Label smoothing of the cross-entropy.")
    augment: bool = setting(True, "Random gain, noise and time shift of every training batch.")
    patience: int | None = setting(None, "Stop early after this many epochs without a better validation loss "
                                         "[default: no early stopping, keep the last weights].", minimum=1)
    refit: bool = setting(True, "After measuring on the validation windows, train again on training + validation "
                                "windows (--no-refit keeps the first fit).")
    seed: int = setting(0, "Seed for the split, initialisation and batches.")

    def __post_init__(self):
        if self.steps < 1 or (self.epochs is not None and self.epochs < 1) or self.batch_size < 2:
            raise UserError(f"steps and epochs must be at least 1 and the batch size at least 2 (got steps "
                            f"{self.steps}, epochs {self.epochs}, batch size {self.batch_size})")
        if not (self.lr > 0 and self.weight_decay >= 0 and 0 <= self.label_smoothing < 1 and 0 <= self.warmup < 1):
            raise UserError("lr must be positive, weight decay non-negative, label smoothing and warm-up in [0, 1)")

    def batches(self, n_train: int) -> int:
        """Batches per epoch (a last batch of one window is dropped: it upsets batch statistics)."""
        full, rest = divmod(n_train, self.batch_size)
        return max(1, full + (rest >= 2))

    def epochs_for(self, n_train: int) -> int:
        if self.epochs is not None:
            return self.epochs
        return max(1, min(self.max_epochs, math.ceil(self.steps / self.batches(n_train))))


# The teacher's fine-tuning (edgekit.teacher.finetune): a smaller learning rate for a pretrained encoder, and fewer
# steps, since a step of the teacher costs about a hundred of the student's.
FINETUNE = TrainSettings(steps=300, lr=5e-4, weight_decay=0.05, batch_size=16, refit=False)
# the settings `edgekit train`, `edgekit distill`, `edgekit finetune` and a recipe's sections expose
RECIPE = ("steps", "epochs", "patience", "lr", "batch_size", "label_smoothing", "augment", "refit")
FINETUNE_RECIPE = tuple(k for k in RECIPE if k != "refit")  # the teacher is fine-tuned once, never refitted

