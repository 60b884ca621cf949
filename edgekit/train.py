"""Supervised training of a student on labelled windows.

The recipe (`TrainSettings`, shared by train, distill, sweep and quantize): AdamW with a short linear warm-up and a
cosine decay to zero over a fixed number of optimiser steps, label smoothing, and augmentation of every batch
(edgekit.augment). Small datasets get many epochs and large ones few, for the same steps. No early stopping by
default: on tens of validation windows the stopping epoch is mostly noise (measured in
benchmarks/results/training_recipe.md). The validation windows instead measure the recipe, and `train_student`
then refits on training and validation windows together, so a small dataset loses none of its labels.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn
from tqdm.auto import tqdm

from edgekit_runtime.errors import UserError
from edgekit_runtime.preprocess import Preprocessing, window_log_scale

from .augment import Augment
from .train_settings import TrainSettings


Inputs = "np.ndarray | tuple[torch.Tensor, ...]"


def _as_tensors(x) -> tuple[torch.Tensor, ...]:
    """A model's inputs: one array (students) or a tuple of tensors passed as model(*inputs) (the teacher)."""
    return (torch.from_numpy(x),) if isinstance(x, np.ndarray) else tuple(x)


def predict_logits(model: nn.Module, x: Inputs, batch_size: int = 256) -> np.ndarray:
    xs = _as_tensors(x)
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(*(t[i : i + batch_size] for t in xs)).numpy()
                               for i in range(0, len(xs[0]), batch_size)])


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
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
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
            bar.set_postfix(loss=f"{total_loss / n_train:.3f}")
            continue
        val_loss, val_acc = val_metrics()
        bar.set_postfix(loss=f"{total_loss / n_train:.3f}", val_loss=f"{val_loss:.3f}", val_acc=f"{val_acc:.2f}")
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


def resolve_split(ds, method: str | None, test_groups: list[str] | None) -> tuple[str, list[str] | None]:
    """The default split: a bundled benchmark's own train/test split when it has one, else random."""
    if method is None:
        if ds.groups is not None and set(ds.groups.tolist()) == {"train", "test"} and test_groups is None:
            return "group", ["test"]
        return "random", test_groups
    return method, test_groups


def split_from_spec(ds, spec: dict):
    """(train, val, test) of `ds` as a checkpoint's data spec records the split."""
    from .data import split_dataset

    return split_dataset(ds, spec["split"], seed=spec["seed"], val=spec["val"], test=spec["test"],
                         test_groups=spec.get("test_groups"))


def labelled_splits(spec: dict, split_method: str | None, test_groups: list[str] | None, val: float, test: float,
                    seed: int):
    """Load labelled data and split it: (dataset, spec with the split recorded, train, val, test)."""
    from .data import load_spec, source_digest

    ds = load_spec(spec)
    if (digest := source_digest(spec["dataset"])) is not None:
        spec = {**spec, "source_sha256": digest}
    if ds.labels is None:
        raise UserError(f"{ds.name}: no labels to train on (give --label-column for your files)")
    split_method, test_groups = resolve_split(ds, split_method, test_groups)
    spec = {**spec, "split": split_method, "test_groups": test_groups, "seed": seed, "val": val, "test": test}
    tr, va, te = split_from_spec(ds, spec)
    present = np.unique(tr.labels)
    if len(present) < 2:
        raise UserError(f"{ds.name}: the training split has {len(present)} class(es); classification needs two or more")
    return ds, spec, tr, va, te


# "auto" normalises per window when, in some channel, the windows' standard deviations span more than this factor
# between the 10th and 90th percentile: one global scale would leave the quiet windows as flat lines (PLAID's
# appliance currents span 1e5; an IMU's still and running windows, BasicMotions, span at most 56). A spread that
# wide says something about the class, so the model gets each window's scale too ("window_scale"; PLAID, first
# fit, seed 0: 0.808 -> 0.883).
SCALE_SPREAD_FOR_WINDOW = 1000.0


def resolve_normalize(normalize: str, windows: np.ndarray) -> str:
    """"stored" or "window_scale" for "auto", from the spread of the per-window scales of `windows` [N, C, T]."""
    if normalize != "auto":
        return normalize
    sd = windows.std(axis=2)
    spread = np.percentile(sd, 90, axis=0) / np.maximum(np.percentile(sd, 10, axis=0), 1e-12)
    return "window_scale" if spread.max() > SCALE_SPREAD_FOR_WINDOW else "stored"


def fit_preprocessing(train, normalize: str, stride: int, steps: dict | None = None) -> Preprocessing:
    """Per-channel statistics of the training windows (observed samples only, after the signal-level `steps`:
    Preprocessing's detrend, filter and max_gap, see edgekit.filters.signal_steps) and the windowing to use.
    `normalize`: "stored", "window", "window_scale" or "auto" (`resolve_normalize`)."""
    from .data import model_inputs

    steps = steps or {}
    base = Preprocessing(train.channel_names, train.sampling_rate, train.length, stride, "none", **steps)
    windows = model_inputs(base, train)  # filtered, not yet normalised
    normalize = resolve_normalize(normalize, windows)
    mean = std = None
    if normalize == "stored":
        x = windows.transpose(1, 0, 2).reshape(train.n_channels, -1)
        if train.mask is not None:
            x = x[:, train.mask.reshape(-1)]
        mean, std = tuple(x.mean(1).astype(float)), tuple(x.std(1).astype(float))
    elif normalize == "window_scale":
        scale = window_log_scale(windows)
        mean, std = tuple(scale.mean(0).astype(float)), tuple(scale.std(0).astype(float))
    return Preprocessing(train.channel_names, train.sampling_rate, train.length, stride, normalize, mean, std,
                         **steps)


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


def train_student(spec: dict, out: str, split_method: str | None = None, test_groups: list[str] | None = None,
                  val: float = 0.2, test: float = 0.2, params: str = "10k", width: int | None = None,
                  normalize: str = "auto", signal: dict | None = None, settings: TrainSettings = TrainSettings(),
                  model_options: dict | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Load data, train an MSA-CNN on its labels (the recipe of `settings`, refitting on training + validation
    windows), evaluate on the test split, save a checkpoint; return a summary.

    `signal`: filter/detrend/resampling options (edgekit.filters.SIGNAL_OPTIONS); `model_options`: MSACNNConfig
    fields to set (benchmarks/training_recipe.py)."""
    import time

    from .checkpoint import Checkpoint, HeldOut, save_checkpoint
    from .data import bundled_name, model_inputs
    from .filters import signal_spec, signal_steps
    from .models import MSACNN, count_macs, count_parameters

    started = time.perf_counter()
    ds, spec, tr, va, te = labelled_splits(spec, split_method, test_groups, val, test, settings.seed)
    steps = signal_steps(signal or {}, ds.sampling_rate)
    recording_steps = signal_spec(steps, ds.sampling_rate)
    if recording_steps is not None and bundled_name(spec["dataset"]) is None:
        # recordings are filtered and resampled whole, then cut, as `edgekit run` does; the spec keeps the steps
        # so that every later stage reloads these windows
        ds, spec, tr, va, te = labelled_splits({**spec, "signal": recording_steps}, split_method, test_groups, val,
                                               test, settings.seed)
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
            "parameters": count_parameters(model), "macs": count_macs(model), "model": cfg.to_dict(), "metrics": metrics,
            "checkpoint": str(out)}
