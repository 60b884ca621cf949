"""Fine-tuning the teacher on labels, and writing its embeddings."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import atomic_write

from ..data import WindowSet
from ..train import TrainSettings, classification_metrics, fit_preprocessing, labelled_splits, predict_logits, \
    train_classifier
from .data import prepare, time_scales
from .model import Teacher, TeacherConfig
from .store import TeacherCheckpoint, load_teacher, save_teacher


class Classifying(nn.Module):
    """The teacher as a classifier of (values, times, observed) windows."""

    def __init__(self, teacher: Teacher):
        super().__init__()
        self.teacher = teacher

    def forward(self, values, times, observed):
        return self.teacher.classify(values, times, observed)


def few_labels(ds: WindowSet, per_class: int, seed: int) -> WindowSet:
    """At most `per_class` windows of each class, drawn with `seed` (the few-label regime)."""
    rng = np.random.default_rng(seed)
    idx = [rng.permutation(np.flatnonzero(ds.labels == k))[:per_class] for k in range(len(ds.class_names))]
    return ds.subset(np.sort(np.concatenate(idx)))


def inputs(data) -> tuple[torch.Tensor, ...]:
    return data.values, data.times, data.observed


def finetune(spec: dict, out: str, pretrained: str | None = None, size: str = "small", attention: str = "dense",
             patch: int = 1, labels_per_class: int | None = None, train_encoder: bool = True,
             split_method: str | None = None, test_groups: list[str] | None = None, val: float = 0.2,
             test: float = 0.2, seed: int = 0, epochs: int = 100, patience: int = 20, lr: float = 5e-4,
             batch_size: int = 32, progress: bool = True) -> dict:
    """Fine-tune a pretrained teacher (or train one from scratch when `pretrained` is None) on labels."""
    ds, spec, tr, va, te = labelled_splits(spec, split_method, test_groups, val, test, seed)
    if labels_per_class is not None:
        tr = few_labels(tr, labels_per_class, seed)
    if pretrained is not None:
        base = load_teacher(pretrained)
        if base.model.cfg.n_channels != ds.n_channels:
            raise UserError(f"{pretrained}: the teacher was pretrained on {base.model.cfg.n_channels} channels, "
                            f"{ds.name} has {ds.n_channels}")
        pre, encoder = base.preprocessing, base.model
    else:
        pre = fit_preprocessing(tr, "stored", spec.get("stride") or ds.length)
        encoder = Teacher(TeacherConfig.of_size(size, n_channels=ds.n_channels, attention=attention, patch=patch,
                                                **time_scales(ds)))
    torch.manual_seed(seed)
    model = encoder.with_classifier(len(ds.class_names))
    if not train_encoder:
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("classifier.")
    data = {k: prepare(s, pre) for k, s in (("train", tr), ("val", va), ("test", te))}
    clf = Classifying(model)
    settings = TrainSettings(epochs=epochs, patience=patience, lr=lr, batch_size=batch_size, seed=seed)
    history = train_classifier(clf, inputs(data["train"]), tr.labels, inputs(data["val"]), va.labels, settings,
                               progress=progress)
    metrics = classification_metrics(te.labels, predict_logits(clf, inputs(data["test"])))
    state = {**history, "pretrained": pretrained, "labels_per_class": labels_per_class,
             "train_encoder": train_encoder, "test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"]}
    save_teacher(out, TeacherCheckpoint(model, pre, spec, ds.class_names, state))
    return {"dataset": ds.name, "windows": {"train": len(tr), "val": len(va), "test": len(te)},
            "parameters": sum(p.numel() for p in model.parameters()), **state, "checkpoint": out}


def embed(checkpoint: str, ds: WindowSet, out: str, tokens: bool = False, batch_size: int = 64) -> tuple[int, ...]:
    """Write pooled ([N, d]) or per-token ([N, L, d]) embeddings of every window of `ds` to `out` (.npy)."""
    ckpt = load_teacher(checkpoint)
    if ckpt.model.cfg.n_channels != ds.n_channels:
        raise UserError(f"{checkpoint}: the teacher takes {ckpt.model.cfg.n_channels} channels, "
                        f"{ds.name} has {ds.n_channels}")
    data = prepare(ds, ckpt.preprocessing)
    model = ckpt.model.eval()
    parts = []
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            b = data.take(slice(i, i + batch_size))
            x, pooled = model.encode(*model.tokenize(b.values, b.times, b.observed))
            parts.append((x if tokens else pooled).numpy())
    emb = np.concatenate(parts)
    if not str(out).endswith(".npy"):
        raise UserError(f"{out}: embeddings are written as .npy; give a path ending in .npy")
    with atomic_write(out, binary=True) as f:
        np.save(f, emb, allow_pickle=False)
    return emb.shape
