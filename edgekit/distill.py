"""Distillation of a fine-tuned teacher into an MSA-CNN student.

Loss per batch (weights and temperature configurable):

    L = w_ce · CE(y, s)                              on labelled windows
      + w_kd · T² · KL(softmax(t / T) ‖ softmax(s / T))   on every window, unlabelled ones included
      + w_feat · MSE(P f_s, z(f_t))                  on every window

with s, t the student's and teacher's logits, f_s the student's pooled features, P a linear projection trained
alongside (not part of the exported student), and z(f_t) the teacher's embedding standardised per dimension.
The teacher's logits and embeddings are computed once per data set and cached on disk next to the teacher, keyed
by the teacher's weights and the exact windows, so distilling several students does not rerun the teacher.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import atomic_write

from .data import WindowSet, load_spec
from .train import TrainSettings, classification_metrics, fit, predict_logits, split_from_spec, student_config

CACHE_DIR = "distill-cache"


@dataclass(frozen=True)
class DistillSettings:
    ce_weight: float = 1.0
    kd_weight: float = 1.0
    feature_weight: float = 0.5
    temperature: float = 4.0


def standardised(embeddings: np.ndarray) -> torch.Tensor:
    """The teacher's embeddings standardised per dimension: the target of the feature term."""
    return torch.from_numpy((embeddings - embeddings.mean(0)) / (embeddings.std(0) + 1e-6))


def distillation_loss(student, project: nn.Module, x: torch.Tensor, y: torch.Tensor, t_logits: torch.Tensor,
                      t_emb: torch.Tensor, s: DistillSettings, label_smoothing: float = 0.0) -> torch.Tensor:
    """The loss of the module docstring for one batch; labels < 0 mark unlabelled windows (no CE term)."""
    feats = student.features(x)
    logits = student.classifier(feats)
    T = s.temperature
    loss = s.kd_weight * T * T * F.kl_div(F.log_softmax(logits / T, -1), F.softmax(t_logits / T, -1),
                                          reduction="batchmean")
    labelled = y >= 0
    if labelled.any() and s.ce_weight:
        loss = loss + s.ce_weight * F.cross_entropy(logits[labelled], y[labelled], label_smoothing=label_smoothing)
    if s.feature_weight:
        loss = loss + s.feature_weight * F.mse_loss(project(feats), t_emb)
    return loss


def distillation_batches(student, project: nn.Module, x: np.ndarray, y: np.ndarray, t_logits: torch.Tensor,
                         t_emb: torch.Tensor, s: DistillSettings, recipe: TrainSettings):
    """`batch_loss(indices)` for `fit`: the distillation loss on a batch, augmented as the recipe says (the
    teacher's outputs are those of the clean windows: augmentation keeps the label, so it keeps the target)."""
    from .augment import Augment

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    augment = Augment() if recipe.augment else None

    def batch_loss(idx):
        xb = xt[idx] if augment is None else augment(xt[idx])
        return distillation_loss(student, project, xb, yt[idx], t_logits[idx], t_emb[idx], s, recipe.label_smoothing)

    return batch_loss


def teacher_outputs(teacher_dir: str, ckpt, ds: WindowSet) -> tuple[np.ndarray, np.ndarray]:
    """(logits [N, K], embeddings [N, d]) of the teacher on `ds`, from the on-disk cache when present."""
    from .teacher.data import prepare

    h = hashlib.sha256()
    h.update((Path(teacher_dir) / "model.pt").read_bytes())
    h.update(np.ascontiguousarray(ds.values).tobytes())
    path = Path(teacher_dir) / CACHE_DIR / f"{h.hexdigest()[:24]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["logits"], z["embeddings"]
    data = prepare(ds, ckpt.preprocessing, ckpt.model.cfg.patch)
    model = ckpt.model.eval()
    logits, emb = [], []
    with torch.no_grad():
        for i in range(0, len(data), 64):
            b = data.take(slice(i, i + 64))
            e = model.embed(b.values, b.times, b.observed)
            emb.append(e.numpy())
            logits.append(model.classifier(e).numpy())
    logits, emb = np.concatenate(logits), np.concatenate(emb)
    with atomic_write(path, binary=True) as f:
        np.savez(f, logits=logits, embeddings=emb)
    return logits, emb


def distill(teacher_dir: str, out: str, spec: dict | None = None, unlabeled: list[dict] = (),
            params: str = "10k", width: int | None = None, settings: DistillSettings = DistillSettings(),
            train_settings: TrainSettings = TrainSettings(), overwrite: bool = False, progress: bool = True) -> dict:
    """Distil the teacher in `teacher_dir` into a student saved at `out`; return a summary.

    `spec` defaults to the data and split the teacher was fine-tuned on (so its test windows stay unseen);
    `unlabeled` adds windows of other data sets, used through the teacher's soft labels only.
    """
    from .checkpoint import Checkpoint, save_checkpoint
    from .models import MSACNN, count_macs, count_parameters
    from .teacher.store import load_teacher

    teacher = load_teacher(teacher_dir)
    if teacher.model.classifier is None or not teacher.classes:
        raise UserError(f"{teacher_dir}: the teacher has no classification head; fine-tune it first")
    spec = {**teacher.data, **(spec or {})}
    if "split" not in spec:
        raise UserError(f"{teacher_dir}: no recorded data split; fine-tune the teacher with edgekit finetune")
    ds = load_spec(spec)
    if ds.n_channels != teacher.model.cfg.n_channels:
        raise UserError(f"the teacher takes {teacher.model.cfg.n_channels} channels, {ds.name} has {ds.n_channels}")
    if tuple(ds.class_names) != tuple(teacher.classes):
        raise UserError(f"the teacher's classes {list(teacher.classes)} differ from {ds.name}'s {list(ds.class_names)}")
    tr, va, te = split_from_spec(ds, spec)
    extra = [load_spec(u) for u in unlabeled]
    for u in extra:
        if (u.n_channels, u.length) != (ds.n_channels, ds.length):
            raise UserError(f"unlabelled data {u.name} has {u.n_channels} channels × {u.length} samples; the "
                            f"student takes {ds.n_channels} × {ds.length}")

    pre = teacher.preprocessing
    sets = [tr, *extra]
    x_train = np.concatenate([pre.prepare_windows(s.values) for s in sets])
    y_train = np.concatenate([tr.labels, *[np.full(len(u), -1) for u in extra]])
    outs = [teacher_outputs(teacher_dir, teacher, s) for s in sets]
    t_logits = torch.from_numpy(np.concatenate([o[0] for o in outs]))
    t_emb = standardised(np.concatenate([o[1] for o in outs]))
    x_val, x_test = pre.prepare_windows(va.values), pre.prepare_windows(te.values)

    torch.manual_seed(train_settings.seed)
    cfg = student_config(ds, params, width)
    student = MSACNN(cfg)
    project = nn.Linear(cfg.embed, t_emb.shape[1])
    batch_loss = distillation_batches(student, project, x_train, y_train, t_logits, t_emb, settings, train_settings)

    def val_metrics():
        logits = predict_logits(student, x_val)
        ce = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(va.labels))
        return float(ce), float((logits.argmax(1) == va.labels).mean())

    history = fit(student, len(y_train), batch_loss, val_metrics if len(va) else None, train_settings,
                  extra_parameters=list(project.parameters()), progress=progress)
    s_metrics = classification_metrics(te.labels, predict_logits(student, x_test))
    t_metrics = classification_metrics(te.labels, teacher_outputs(teacher_dir, teacher, te)[0])
    metrics = {**history, "test_accuracy": s_metrics["accuracy"], "test_macro_f1": s_metrics["macro_f1"],
               "distilled_from": str(teacher_dir), "distill": asdict(settings)}
    save_checkpoint(out, Checkpoint(student, pre, ds.class_names, spec, metrics), overwrite=overwrite)
    t_params = teacher.model.parameter_count()
    s_params = count_parameters(student)
    return {
        "dataset": ds.name,
        "windows": {"train_labelled": len(tr), "train_unlabelled": len(y_train) - len(tr), "val": len(va),
                    "test": len(te)},
        "teacher": {"parameters": t_params, "macs": teacher.model.macs(ds.n_channels, ds.length), "test_accuracy": t_metrics["accuracy"],
                    "test_macro_f1": t_metrics["macro_f1"]},
        "student": {"parameters": s_params, "macs": count_macs(student), "width": cfg.width,
                    "test_accuracy": s_metrics["accuracy"], "test_macro_f1": s_metrics["macro_f1"]},
        "compression": round(t_params / s_params, 1),
        "history": history,
        "checkpoint": str(out),
    }
