"""Fine-tuning the teacher on labels, and writing its embeddings.

The recipe is the students' (edgekit.training_loop: AdamW, warm-up and cosine decay over a fixed number of steps, label
smoothing, augmented batches) with a smaller learning rate for a pretrained encoder and fewer steps: a step of the
teacher costs a hundred of the student's. It runs once per time shift of SHIFTS (without validation windows, only
the first), and the fine-tuned teacher is the ensemble of the runs (ensemble.py); the validation windows give the
held-out estimate (there is no refit).

A window longer than the encoder's context is fine-tuned on one random crop of it per step (teacher/model.py), a
step costing a crop's share of the window; the steps are taken once per crop that inference averages over, so every
part of a long window gets the training a short one does, in about the time the whole windows took (ACSF1: 183
tokens, 5 crops of 64, 1500 steps).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import atomic_write, check_writable

from ..augment import Augment
from ..data import WindowSet
from ..filters import filtered_splits
from ..normalization import fit_preprocessing
from ..training_loop import classification_metrics, predict_logits, train_classifier
from ..settings import FinetuneSettings, SignalSettings, SplitSettings, TeacherSettings
from ..train_settings import FINETUNE, TrainSettings
from .data import prepare
from .ensemble import Ensemble
from .general import resolve
from .model import Teacher, TeacherConfig, crop_starts
from .store import TeacherCheckpoint, load_teacher, save_teacher


# Time shifts (a share of the window) fine-tuning runs with, one run each; the teacher averages the runs
# (ensemble.py). Without validation windows (the label-scarce regime) only the first runs: there averaging in the
# unshifted run cost the teacher and its student (GunPoint, 10 labels per class, seeds 0 / 1: teacher 0.887 / 0.84 and
# distilled 0.953 / 0.92, against 0.927 / 0.947 and 0.967 / 0.987 from the shifted run alone). Shifting teaches the
# position-encoded encoder that where an event falls is rarely the label (GunPoint, 3 seeds: 0.93 -> 0.98), but on
# long windows of repeating cycles it can cost more than it gives (ACSF1: 0.78 -> 0.56).
SHIFTS = (0.1, 0.0)


class Classifying(nn.Module):
    """A teacher (or an ensemble of them) as a classifier of (values, times, observed) windows."""

    def __init__(self, teacher: Teacher | Ensemble):
        super().__init__()
        self.teacher = teacher

    def forward(self, values, times, observed):
        return self.teacher.classify(values, times, observed)


def few_label_indices(labels: np.ndarray, n_classes: int, per_class: int, seed: int) -> np.ndarray:
    """Indices of at most `per_class` windows of each class, drawn with `seed` (the few-label regime; distillation
    draws the same ones)."""
    if per_class < 1:
        raise UserError(f"labels per class must be at least 1, got {per_class}")
    rng = np.random.default_rng(seed)
    idx = [rng.permutation(np.flatnonzero(labels == k))[:per_class] for k in range(n_classes)]
    return np.sort(np.concatenate(idx))


def few_labels(ds: WindowSet, per_class: int, seed: int) -> WindowSet:
    return ds.subset(few_label_indices(ds.labels, len(ds.class_names), per_class, seed))


def inputs(data) -> tuple[torch.Tensor, ...]:
    return data.values, data.times, data.observed


def start_encoder(teacher: TeacherSettings) -> tuple[Teacher, object]:
    """(encoder, its preprocessing or None) to fine-tune or pretrain further: a pretrained teacher ("general" or a
    run directory), or a fresh one of `teacher.size`; either with `teacher.attention`."""
    if teacher.pretrained is None:
        return Teacher(TeacherConfig.of_size(**teacher.model_options())), None
    base = load_teacher(resolve(teacher.pretrained))
    return base.model.encoder_only().with_backend(**teacher.backend()), base.preprocessing


def crops_per_window(encoder: Teacher, length: int) -> int:
    """How many crops of the encoder's context inference averages over for a window of `length` samples."""
    tokens = -(-length // encoder.cfg.patch)
    return len(crop_starts(tokens, encoder.cfg.context)) if tokens > encoder.cfg.context else 1


def finetune(spec: dict, out: str, teacher: TeacherSettings = TeacherSettings(),
             finetuning: FinetuneSettings = FinetuneSettings(), split: SplitSettings = SplitSettings(),
             settings: TrainSettings = FINETUNE, signal: SignalSettings = SignalSettings(),
             progress: bool = True) -> dict:
    """Fine-tune a pretrained teacher (or train one from scratch when `teacher.pretrained` is None) on labels,
    after the signal-level steps of `signal`, which its students then inherit."""
    check_writable(out)  # replaced when done, as a pretraining run's is
    seed = settings.seed
    ds, spec, tr, va, te, steps = filtered_splits(spec, split, seed, signal)
    if finetuning.labels_per_class is not None:
        tr = few_labels(tr, finetuning.labels_per_class, seed)
    torch.manual_seed(seed)
    encoder, pre = start_encoder(teacher)
    # an encoder of other data, or signal steps it was not pretrained with: this data's statistics
    if pre is None or pre.channels != tuple(ds.channel_names) or signal != SignalSettings():
        pre = fit_preprocessing(tr, "auto", spec.get("stride") or ds.length, steps)
    data = {k: prepare(s, pre, encoder.cfg.patch) for k, s in (("train", tr), ("val", va), ("test", te))}
    settings = replace(settings, steps=settings.steps * crops_per_window(encoder, data["train"].values.shape[2]))
    runs = {}
    for shift in SHIFTS if settings.augment and len(va) else SHIFTS[:1]:
        torch.manual_seed(seed)
        clf = Classifying(encoder.with_classifier(ds.n_channels, len(ds.class_names)))
        if finetuning.freeze_encoder:
            for name, p in clf.teacher.named_parameters():
                p.requires_grad = name.startswith("classifier.")
        history = train_classifier(clf, inputs(data["train"]), tr.labels, inputs(data["val"]), va.labels,
                                   settings, progress=progress, desc=f"finetune (shift {shift:g})",
                                   augment=Augment(shift=shift))
        runs[shift] = (clf.teacher, history)
    model = runs[SHIFTS[0]][0] if len(runs) == 1 else Ensemble([m for m, _ in runs.values()])
    clf = Classifying(model)
    metrics = classification_metrics(te.labels, predict_logits(clf, inputs(data["test"])))
    val_accuracy = classification_metrics(va.labels, predict_logits(clf, inputs(data["val"])))["accuracy"] \
        if len(va) else None
    state = {"runs": {f"{k:g}": h for k, (_, h) in runs.items()}, "pretrained": teacher.pretrained,
             "labels_per_class": finetuning.labels_per_class, "train_encoder": not finetuning.freeze_encoder,
             "val_accuracy": val_accuracy, "test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"]}
    save_teacher(out, TeacherCheckpoint(model, pre, spec, ds.class_names, state))
    return {"dataset": ds.name, "windows": {"train": len(tr), "val": len(va), "test": len(te)},
            "parameters": model.parameter_count(), **state, "checkpoint": out}


def embed(checkpoint: str, ds: WindowSet, out: str, tokens: bool = False, batch_size: int = 64) -> tuple[int, ...]:
    """Write window embeddings ([N, C·2d]) or per-token ones ([N·C, L, d]) of every window of `ds` to `out`
    (.npy)."""
    if not str(out).endswith(".npy"):
        raise UserError(f"{out}: embeddings are written as .npy; give a path ending in .npy")
    ckpt = load_teacher(resolve(checkpoint))
    pre = ckpt.preprocessing
    if pre is None or pre.channels != tuple(ds.channel_names):
        pre = fit_preprocessing(ds, "auto", ds.length)
    data = prepare(ds, pre, ckpt.model.cfg.patch)
    model = ckpt.model
    parts = []
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            b = data.take(slice(i, i + batch_size))
            x = (model.token_embeddings if tokens else model.embed)(b.values, b.times, b.observed)
            parts.append(x.numpy())
    emb = np.concatenate(parts)
    with atomic_write(out, binary=True) as f:
        np.save(f, emb, allow_pickle=False)
    return emb.shape
