"""The training loop every model of edgekit is trained with: students, the teacher's fine-tuning, distillation.

The recipe (`TrainSettings`): AdamW with a short linear warm-up and a cosine decay to zero over a fixed number of
optimiser steps, label smoothing, and augmentation of every batch (edgekit.augment). Small datasets get many
epochs and large ones few, for the same steps. No early stopping by default: on tens of validation windows the
stopping epoch is mostly noise (measured in benchmarks/results/training_recipe.md).
"""

from __future__ import annotations

import copy
import math
import sys
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn
from tqdm.auto import tqdm

from edgekit_runtime.errors import UserError

from .augment import Augment
from .train_settings import TrainSettings

Inputs = "np.ndarray | tuple[torch.Tensor, ...]"


def _as_tensors(x) -> tuple[torch.Tensor, ...]:
    """A model's inputs: one array (students) or a tuple of tensors passed as model(*inputs) (the teacher)."""
    return (torch.from_numpy(x),) if isinstance(x, np.ndarray) else tuple(x)


def progress_bar(iterable, **options) -> tqdm:
    """A tqdm bar on stderr, redrawn ten times a second on a terminal but only every 30 s into a file or a pipe,
    where each redraw is appended: a long run's log stays readable (a few lines rather than megabytes)."""
    return tqdm(iterable, mininterval=0.1 if sys.stderr.isatty() else 30, **options)


def predict_logits(model: nn.Module, x: Inputs, batch_size: int = 256) -> np.ndarray:
    xs = _as_tensors(x)
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(*(t[i : i + batch_size] for t in xs)).numpy()
                               for i in range(0, len(xs[0]), batch_size)])


def validation_rank(history: dict) -> tuple[float, float]:
    """How a fit stands on the validation windows, for choosing among fits: higher accuracy, then lower loss."""
    return (history.get("val_accuracy") or 0.0, -(history.get("val_loss") or 0.0))


def classification_metrics(y_true: np.ndarray, logits: np.ndarray) -> dict:
    pred = logits.argmax(axis=1)
    return {"accuracy": float((pred == y_true).mean()),
            "macro_f1": float(f1_score(y_true, pred, average="macro", zero_division=0))}


def _schedule(warmup_steps: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))))
    return factor


def fit(model: nn.Module, n_train: int, batch_loss: Callable[[torch.Tensor], torch.Tensor],
        val_metrics: Callable[[], tuple[float, float]] | None, settings: TrainSettings,
        extra_parameters: list[nn.Parameter] = (), progress: bool = True, desc: str = "train") -> dict:
    """The training loop shared by supervised training and distillation.

    Each epoch visits the `n_train` training windows in a seeded random order, in batches whose loss
    `batch_loss(indices)` computes; the learning rate follows the warm-up and cosine schedule per step.
    `val_metrics()` gives (validation loss, accuracy). With `settings.patience` the model ends with the weights
    of the epoch with the lowest validation loss and stops after `patience` epochs without improvement;
    otherwise every epoch runs, the last weights are kept and validation is measured a few times for the
    progress bar and once at the end. Trains the model's parameters with requires_grad plus `extra_parameters`.
    """
    if n_train < 2:
        raise UserError(f"{n_train} training window(s): training needs at least two")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    epochs, batches = settings.epochs_for(n_train), settings.batches(n_train)
    params = [p for p in model.parameters() if p.requires_grad] + list(extra_parameters)
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    total = epochs * batches
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(int(settings.warmup * total), total))
    early = settings.patience is not None and val_metrics is not None
    best_loss, best_acc, best_state, best_epoch, waited = float("inf"), None, None, 0, 0
    val_loss = val_acc = None
    report_every = max(1, epochs // 10)
    bar = progress_bar(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.from_numpy(rng.permutation(n_train))
        total_loss = 0.0
        for i in range(batches):
            idx = order[i * settings.batch_size : (i + 1) * settings.batch_size]
            opt.zero_grad()
            loss = batch_loss(idx)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
        last = epoch == epochs - 1
        if val_metrics is None or not (early or last or epoch % report_every == 0):
            bar.set_postfix(loss=f"{total_loss / n_train:.3f}", refresh=False)
            continue
        val_loss, val_acc = val_metrics()
        bar.set_postfix(loss=f"{total_loss / n_train:.3f}", val_loss=f"{val_loss:.3f}", val_acc=f"{val_acc:.2f}",
                        refresh=False)
        if not early:
            continue
        if val_loss < best_loss - 1e-4:
            best_loss, best_acc, best_state, best_epoch = val_loss, val_acc, copy.deepcopy(model.state_dict()), epoch
            waited = 0
        else:
            waited += 1
            if waited >= settings.patience:
                break
    bar.close()
    history = {"epochs_run": epoch + 1, "steps": (epoch + 1) * batches}
    if best_state is not None:
        model.load_state_dict(best_state)
        history.update(best_epoch=best_epoch + 1, val_loss=best_loss, val_accuracy=best_acc)
    elif val_loss is not None:
        history.update(val_loss=val_loss, val_accuracy=val_acc)
    model.eval()
    return history


def train_classifier(model: nn.Module, x_train: Inputs, y_train: np.ndarray, x_val: Inputs,
                     y_val: np.ndarray, settings: TrainSettings = TrainSettings(), progress: bool = True,
                     desc: str = "train", augment: Augment = Augment()) -> dict:
    """Supervised training with label-smoothed cross-entropy (see `fit`), every batch augmented (unless
    `settings.augment` is off): a student's windows (one array), or a teacher's values with its observed mask
    shifted alongside (its tuple inputs)."""
    loss_fn = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    xt, yt = _as_tensors(x_train), torch.from_numpy(y_train)
    augment = augment if settings.augment else None

    def batch_loss(idx):
        inputs = tuple(t[idx] for t in xt)
        if augment is not None and len(inputs) == 1:
            inputs = (augment(inputs[0]),)
        elif augment is not None:  # a teacher's (values, times, observed)
            values, observed = augment.with_mask(inputs[0], inputs[2])
            inputs = (values, inputs[1], observed)
        return loss_fn(model(*inputs), yt[idx])

    def val_metrics():
        logits = predict_logits(model, x_val)
        return float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y_val))), \
            float((logits.argmax(1) == y_val).mean())

    return fit(model, len(yt), batch_loss, val_metrics if len(y_val) else None, settings, progress=progress,
               desc=desc)
