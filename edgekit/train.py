"""Supervised training of a student on labelled windows, with early stopping on validation loss."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn
from tqdm.auto import tqdm

from edgekit_runtime.errors import UserError
from edgekit_runtime.preprocess import Preprocessing


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 300
    patience: int = 40
    lr: float = 3e-3
    weight_decay: float = 1e-2
    batch_size: int = 16
    seed: int = 0


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


def fit(model: nn.Module, n_train: int, batch_loss: Callable[[torch.Tensor], torch.Tensor],
        val_metrics: Callable[[], tuple[float, float]] | None, settings: TrainSettings,
        extra_parameters: list[nn.Parameter] = (), progress: bool = True) -> dict:
    """The training loop shared by supervised training and distillation.

    Each epoch visits the `n_train` training windows in a seeded random order, in batches whose loss
    `batch_loss(indices)` computes. After each epoch `val_metrics()` gives (validation loss, accuracy); the model
    ends with the weights of the epoch with the lowest validation loss, and training stops after `patience`
    epochs without improvement. Without validation (None) all epochs run and the last weights are kept.
    Trains the model's parameters with requires_grad plus `extra_parameters` (e.g. a projection head).
    """
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    params = [p for p in model.parameters() if p.requires_grad] + list(extra_parameters)
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings.epochs)
    best_loss, best_state, best_epoch, waited = float("inf"), None, 0, 0
    bar = tqdm(range(settings.epochs), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.from_numpy(rng.permutation(n_train))
        total = 0.0
        for i in range(0, n_train, settings.batch_size):
            idx = order[i : i + settings.batch_size]
            if len(idx) < 2:  # a batch of one window says little and upsets batch statistics
                continue
            opt.zero_grad()
            loss = batch_loss(idx)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        if val_metrics is None:
            continue
        val_loss, val_acc = val_metrics()
        bar.set_postfix(loss=f"{total / n_train:.3f}", val_loss=f"{val_loss:.3f}", val_acc=f"{val_acc:.2f}")
        if val_loss < best_loss - 1e-4:
            best_loss, best_state, best_epoch, waited = val_loss, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            waited += 1
            if waited >= settings.patience:
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"epochs_run": epoch + 1, "best_epoch": best_epoch + 1,
            "best_val_loss": None if best_state is None else best_loss}


def train_classifier(model: nn.Module, x_train: Inputs, y_train: np.ndarray, x_val: Inputs,
                     y_val: np.ndarray, settings: TrainSettings = TrainSettings(), progress: bool = True) -> dict:
    """Supervised training with cross-entropy and early stopping on validation loss (see `fit`)."""
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = _as_tensors(x_train), torch.from_numpy(y_train)

    def batch_loss(idx):
        return loss_fn(model(*(t[idx] for t in xt)), yt[idx])

    def val_metrics():
        logits = predict_logits(model, x_val)
        return float(loss_fn(torch.from_numpy(logits), torch.from_numpy(y_val))), float((logits.argmax(1) == y_val).mean())

    return fit(model, len(yt), batch_loss, val_metrics if len(y_val) else None, settings, progress=progress)


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
    from .data import load_spec

    ds = load_spec(spec)
    if ds.labels is None:
        raise UserError(f"{ds.name}: no labels to train on (give --label-column for your files)")
    split_method, test_groups = resolve_split(ds, split_method, test_groups)
    spec = {**spec, "split": split_method, "test_groups": test_groups, "seed": seed, "val": val, "test": test}
    tr, va, te = split_from_spec(ds, spec)
    present = np.unique(tr.labels)
    if len(present) < 2:
        raise UserError(f"{ds.name}: the training split has {len(present)} class(es); classification needs two or more")
    return ds, spec, tr, va, te


def fit_preprocessing(train, normalize: str, stride: int, signal: dict | None = None) -> Preprocessing:
    """Per-channel statistics of the training windows (observed samples only, after the signal-level steps of
    `signal`: see edgekit.filters) and the windowing to use."""
    from .filters import signal_steps

    steps = signal_steps(signal or {}, train.sampling_rate)
    base = Preprocessing(train.channel_names, train.sampling_rate, train.length, stride, "none", **steps)
    mean = std = None
    if normalize == "stored":
        x = base.prepare_windows(train.values).transpose(1, 0, 2).reshape(train.n_channels, -1)
        if train.mask is not None:
            x = x[:, train.mask.reshape(-1)]
        mean, std = tuple(x.mean(1).astype(float)), tuple(x.std(1).astype(float))
    return Preprocessing(train.channel_names, train.sampling_rate, train.length, stride, normalize, mean, std,
                         **steps)


def student_config(ds, params: str = "10k", width: int | None = None):
    """The student for a dataset: `width` when given, else the widest that fits the `params` budget."""
    from .models.msa_cnn import MSACNNConfig, config_for_budget, parse_budget

    try:
        if width is not None:
            return MSACNNConfig.build(ds.n_channels, len(ds.class_names), ds.length, width=width)
        return config_for_budget(ds.n_channels, len(ds.class_names), ds.length, parse_budget(params))
    except ValueError as e:
        raise UserError(f"cannot build the student: {e}") from None


def train_student(spec: dict, out: str, split_method: str | None = None, test_groups: list[str] | None = None,
                  val: float = 0.2, test: float = 0.2, seed: int = 0, epochs: int = 300, patience: int = 40,
                  lr: float = 3e-3, batch_size: int = 16, params: str = "10k", width: int | None = None,
                  normalize: str = "stored", signal: dict | None = None, overwrite: bool = False,
                  progress: bool = True) -> dict:
    """Load data, train an MSA-CNN on its labels, evaluate on the test split, save a checkpoint; return a summary.

    `signal`: filter/detrend/resampling options (edgekit.filters.SIGNAL_OPTIONS)."""
    from .checkpoint import Checkpoint, save_checkpoint
    from .models import MSACNN, count_macs, count_parameters

    ds, spec, tr, va, te = labelled_splits(spec, split_method, test_groups, val, test, seed)
    pre = fit_preprocessing(tr, normalize, spec.get("stride") or ds.length, signal)
    x = {k: pre.prepare_windows(s.values) for k, s in (("train", tr), ("val", va), ("test", te))}

    torch.manual_seed(seed)
    cfg = student_config(ds, params, width)
    model = MSACNN(cfg)
    settings = TrainSettings(epochs=epochs, patience=patience, lr=lr, batch_size=batch_size, seed=seed)
    history = train_classifier(model, x["train"], tr.labels, x["val"], va.labels, settings, progress=progress)
    test_metrics = classification_metrics(te.labels, predict_logits(model, x["test"]))
    metrics = {**history, "test_accuracy": test_metrics["accuracy"], "test_macro_f1": test_metrics["macro_f1"]}
    save_checkpoint(out, Checkpoint(model, pre, ds.class_names, spec, metrics), overwrite=overwrite)
    return {"dataset": ds.name, "windows": {"train": len(tr), "val": len(va), "test": len(te)},
            "parameters": count_parameters(model), "macs": count_macs(model), "model": cfg.to_dict(), "metrics": metrics,
            "checkpoint": str(out)}
