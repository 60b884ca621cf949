"""Supervised training of a student on labelled windows: the recipe of edgekit.training_loop, then a refit on
training and validation windows together, so a small dataset loses none of its labels; the validation windows
measure the recipe before the refit.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from torch import nn

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import check_writable

from .normalization import fit_preprocessing
from .settings import SplitSettings
from .train_settings import TrainSettings
from .training_loop import classification_metrics, predict_logits, train_classifier


def train_and_refit(make_model: Callable[[], nn.Module], x_train: np.ndarray, y_train: np.ndarray,
                    x_val: np.ndarray, y_val: np.ndarray, settings: TrainSettings,
                    progress: bool = True) -> tuple[nn.Module, dict]:
    """Train on the training windows and measure on the validation windows; then, with `settings.refit` and
    validation windows to add, train a fresh model (same seed; the same epochs, or with early stopping the best
    epoch's count) on both and return it. The history keeps the first run's validation figures: they are the
    held-out estimate."""
    model = make_model()
    history = train_classifier(model, x_train, y_train, x_val, y_val, settings, progress=progress)
    if not (settings.refit and len(y_val)):
        return model, {**history, "refit": False}
    refit = make_model()
    epochs = history.get("best_epoch") or settings.epochs_for(len(y_train))
    second = train_classifier(refit, np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]),
                              x_val[:0], y_val[:0], replace(settings, epochs=epochs, patience=None),
                              progress=progress, desc="refit")
    return refit, {**history, "refit": True, "refit_epochs": second["epochs_run"]}


def student_config(ds, params: str = "10k", width: int | None = None, **options):
    """The student for a dataset: `width` when given, else the widest that fits the `params` budget. `options`
    set other MSACNNConfig fields (e.g. batch_norm=False)."""
    from .models.msa_cnn import MSACNNConfig, config_for_budget, parse_budget

    try:
        if width is not None:
            return MSACNNConfig.build(ds.n_channels, len(ds.class_names), ds.length, width=width, **options)
        return config_for_budget(ds.n_channels, len(ds.class_names), ds.length, parse_budget(params), **options)
    except ValueError as e:
        raise UserError(f"cannot build the student: {e}") from None


def train_student(spec: dict, out: str, split: SplitSettings = SplitSettings(), params: str = "10k",
                  width: int | None = None,
                  normalize: str = "auto", signal=None, settings: TrainSettings = TrainSettings(),
                  model_options: dict | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Load data, train an MSA-CNN on its labels (the recipe of `settings`, refitting on training + validation
    windows), evaluate on the test split, save a checkpoint; return a summary.

    `signal`: filter/detrend/resampling steps (settings.SignalSettings, or a dict of its fields); `model_options`: MSACNNConfig
    fields to set (benchmarks/training_recipe.py)."""
    import time

    from .checkpoint import Checkpoint, HeldOut, save_checkpoint
    from .data import model_inputs
    from .filters import filtered_splits
    from .models import MSACNN, count_macs, count_parameters

    check_writable(out, overwrite)
    started = time.perf_counter()
    ds, spec, tr, va, te, steps = filtered_splits(spec, split, settings.seed, signal)
    if settings.patience is not None and len(va) == 0:
        raise UserError("--patience stops on the validation loss, and this split has no validation windows (--val 0)")
    pre = fit_preprocessing(tr, normalize, spec.get("stride") or ds.length, steps)
    x = {k: model_inputs(pre, s) for k, s in (("train", tr), ("val", va), ("test", te))}

    cfg = student_config(ds, params, width, **(model_options or {}))

    def make_model():
        torch.manual_seed(settings.seed)
        return MSACNN(cfg)

    model, history = train_and_refit(make_model, x["train"], tr.labels, x["val"], va.labels, settings, progress)
    test_metrics = classification_metrics(te.labels, predict_logits(model, x["test"]))
    metrics = {**history, "test_accuracy": test_metrics["accuracy"], "test_macro_f1": test_metrics["macro_f1"],
               "train_seconds": round(time.perf_counter() - started, 1)}
    save_checkpoint(out, Checkpoint(model, pre, ds.class_names, spec, metrics, HeldOut.of(tr, te, spec["seed"])),
                    overwrite=overwrite)
    return {"dataset": ds.name, "windows": {"train": len(tr), "val": len(va), "test": len(te)},
            "parameters": count_parameters(model), "macs": count_macs(model), "model": cfg.to_dict(),
            "metrics": metrics, "checkpoint": str(out)}
