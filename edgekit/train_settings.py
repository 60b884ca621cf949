"""The training recipe's settings, in a module without torch so that the command line can show its defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgekit_runtime.errors import UserError


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 4000  # optimiser steps; epochs = steps / batches per epoch, at most max_epochs
    epochs: int | None = None  # a fixed number of epochs instead of `steps`
    max_epochs: int = 1000
    lr: float = 3e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    warmup: float = 0.05  # share of the steps with a linearly rising learning rate
    label_smoothing: float = 0.1
    augment: bool = True  # edgekit.augment.Augment on every training batch of a student
    patience: int | None = None  # early stopping on validation loss after this many epochs (None: off)
    refit: bool = True  # train_student: refit on training + validation windows
    seed: int = 0

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


def recipe_settings(steps: int, epochs: int | None, patience: int | None, lr: float, batch_size: int,
                    label_smoothing: float, augment: bool, seed: int, **extra) -> TrainSettings:
    """TrainSettings from the options `edgekit train`, `edgekit distill` and recipes share."""
    return TrainSettings(steps=steps, epochs=epochs, patience=patience, lr=lr, batch_size=batch_size,
                         label_smoothing=label_smoothing, augment=augment, seed=seed, **extra)
