"""Distillation of a fine-tuned teacher into an MSA-CNN student.

Loss per batch (weights and temperature configurable):

    L = w_ce · CE(y, s)                              on labelled windows
      + w_kd · T² · KL(softmax(t / T) ‖ softmax(s / T))   on every window, unlabelled ones included
      + w_feat · MSE(P f_s, z(f_t))                  on every window

with s, t the student's and teacher's logits, f_s the student's pooled features, P a linear projection trained
alongside (not part of the exported student), and z(f_t) the teacher's embedding standardised per dimension.
The teacher's logits and embeddings are computed once per data set and cached on disk next to the teacher, keyed
by the edgekit version, the teacher's manifest (its preprocessing and its weights' sha256, checked on loading) and
the exact windows (values, timestamps, mask, uncertainty), so distilling several students does not rerun the teacher.

With validation windows, the teacher's soft labels are mixed with those of MiniRocket (random convolutions and a
ridge classifier), weighted by what lowers the log-loss on the validation windows by more than its standard error
(0 where MiniRocket does not clearly help; teacher/minirocket.py).

With unlabelled training windows (the label-scarce regime) distillation runs twice, as self-training: the second
student learns from the mean of the teacher's and the first student's class probabilities, since the first student,
fitting the labels and the teacher at once, tends to end above the teacher (10 labels per class, test accuracy of
the first and second student: PLAID seed 0 0.719 -> 0.741; GunPoint seeds 0-2 0.973 / 0.960 / 0.967 ->
0.967 / 0.967 / 0.980; JapaneseVowels seeds 0 / 1 0.978 / 0.968 -> 0.978 / 0.970).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import atomic_write

from . import __version__
from .data import WindowSet, load_spec, model_inputs, split_from_spec
from .settings import DistillSettings
from .train import student_config
from .train_settings import TrainSettings
from .training_loop import classification_metrics, fit, predict_logits, validation_rank

CACHE_DIR = "distill-cache"


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

    h = hashlib.sha256(__version__.encode())  # a new edgekit may prepare windows differently
    h.update((Path(teacher_dir) / "teacher.json").read_bytes())  # the preprocessing, and the weights' sha256
    for part in (ds.values, ds.timestamps, ds.mask, ds.uncertainty):  # all the teacher reads of a window
        h.update(b"-" if part is None else np.ascontiguousarray(part).tobytes())
    path = Path(teacher_dir) / CACHE_DIR / f"{h.hexdigest()[:24]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["logits"], z["embeddings"]
    data = prepare(ds, ckpt.preprocessing, ckpt.model.cfg.patch)
    model = ckpt.model  # loaded in eval mode
    logits, emb = [], []
    with torch.no_grad():
        for i in range(0, len(data), 64):
            b = data.take(slice(i, i + 64))
            out, e = model.outputs(b.values, b.times, b.observed)
            emb.append(e.numpy())
            logits.append(out.numpy())
    logits, emb = np.concatenate(logits), np.concatenate(emb)
    with atomic_write(path, binary=True) as f:
        np.savez(f, logits=logits, embeddings=emb)
    return logits, emb


def minirocket_target(tr: WindowSet, keep: np.ndarray, extra: list[WindowSet], va: WindowSet, te: WindowSet,
                      n_classes: int, val_logits: np.ndarray, seed: int) -> dict:
    """MiniRocket beside the teacher (teacher/minirocket.py): its weight in the target, chosen on the validation
    windows, its validation and test accuracy, and its class probabilities on (the training windows then `extra`'s,
    validation, test) under "probabilities" (out of fold on the labelled training windows)."""
    from .teacher.minirocket import member_weight, minirocket_probabilities

    windows = [s.values for s in (tr, va, te, *extra)]
    got = minirocket_probabilities(windows[0][keep], tr.labels[keep], windows, n_classes, seed)
    if got is None:  # too few labels per class for out-of-fold answers
        return {"weight": 0.0, "val_accuracy": None, "test_accuracy": None}
    oof, (p_tr, p_va, p_te, *p_extra) = got
    p_tr[keep] = oof
    return {"weight": member_weight(val_logits, p_va, va.labels),
            "val_accuracy": float((p_va.argmax(1) == va.labels).mean()),
            "test_accuracy": float((p_te.argmax(1) == te.labels).mean()),
            "probabilities": (np.concatenate([p_tr, *p_extra]), p_va, p_te)}


def _unlabelled_spec(u: dict, spec: dict) -> dict:
    """Unlabelled recordings are cut as the teacher's data was: with its window unless given one, and filtered and
    resampled by its signal steps (a bundled dataset comes as it is)."""
    from .data import bundled_name

    if bundled_name(u["dataset"]) is not None:
        return u
    return {"window": spec.get("window"), "signal": spec.get("signal"), **{k: v for k, v in u.items() if v is not None}}


def distill(teacher_dir: str, out: str, spec: dict | None = None, unlabeled: list[dict] = (),
            params: str = "10k", width: int | None = None, settings: DistillSettings = DistillSettings(),
            train_settings: TrainSettings = TrainSettings(), labels_per_class: int | None = None,
            overwrite: bool = False, progress: bool = True) -> dict:
    """Distil the teacher in `teacher_dir` into a student saved at `out`; return a summary.

    `spec` defaults to the data and split the teacher was fine-tuned on (so its test windows stay unseen);
    `unlabeled` adds windows of other data sets, and `labels_per_class` (default: as the teacher was fine-tuned) keeps
    only that many labels per class of the training split: the other windows are used through the teacher's soft
    labels only.

    The same student is also trained on the labels alone (the `edgekit train` recipe). The one that does better on
    the validation windows is kept and, with `train_settings.refit`, refitted on training + validation windows;
    the summary reports teacher, student alone and distilled student side by side.
    """
    from dataclasses import replace

    from edgekit_runtime.files import check_writable

    from .checkpoint import Checkpoint, HeldOut, save_checkpoint
    from .models import MSACNN, count_macs, count_parameters
    from .teacher.ensemble import mean_probabilities
    from .teacher.finetune import few_label_indices
    from .teacher.minirocket import mixed_logits
    from .teacher.store import load_teacher
    from .training_loop import train_classifier

    check_writable(out, overwrite)
    teacher = load_teacher(teacher_dir)
    if not teacher.classes:
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
    extra = [load_spec(_unlabelled_spec(u, spec)) for u in unlabeled]
    for u in extra:
        if (u.n_channels, u.length) != (ds.n_channels, ds.length):
            raise UserError(f"unlabelled data {u.name} has {u.n_channels} channels × {u.length} samples; the "
                            f"student takes {ds.n_channels} × {ds.length}")

    pre = teacher.preprocessing
    if labels_per_class is None:  # the labels the teacher was fine-tuned with
        labels_per_class = teacher.state.get("labels_per_class")
    keep = np.arange(len(tr)) if labels_per_class is None else \
        few_label_indices(tr.labels, len(ds.class_names), labels_per_class, spec["seed"])
    tr_labels = np.full(len(tr), -1)
    tr_labels[keep] = tr.labels[keep]
    sets = [tr, *extra]
    x_train = np.concatenate([model_inputs(pre, s) for s in sets])
    y_train = np.concatenate([tr_labels, *[np.full(len(u), -1) for u in extra]])
    outs = [teacher_outputs(teacher_dir, teacher, s) for s in sets]
    x_val, x_test = model_inputs(pre, va), model_inputs(pre, te)
    val_outs = teacher_outputs(teacher_dir, teacher, va) if len(va) else None
    cfg = student_config(ds, params, width)
    first = replace(train_settings, patience=None) if not len(va) else train_settings

    def distilled(x, y, targets, embeddings, recipe):
        torch.manual_seed(recipe.seed)
        student = MSACNN(cfg)
        t_logits, t_emb = torch.from_numpy(targets), standardised(embeddings)
        project = nn.Linear(cfg.embed, t_emb.shape[1])
        batch_loss = distillation_batches(student, project, x, y, t_logits, t_emb, settings, recipe)

        def val_metrics():
            logits = predict_logits(student, x_val)
            ce = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(va.labels))
            return float(ce), float((logits.argmax(1) == va.labels).mean())

        history = fit(student, len(y), batch_loss, val_metrics if len(va) and recipe is first else None, recipe,
                      extra_parameters=list(project.parameters()), progress=progress,
                      desc="distil" if recipe is first else "refit")
        return student, history

    def alone(x, y, recipe):
        torch.manual_seed(recipe.seed)
        student = MSACNN(cfg)
        v = (x_val, va.labels) if recipe is first else (x_val[:0], va.labels[:0])
        return student, train_classifier(student, x, y, *v, recipe, progress=progress,
                                         desc="alone" if recipe is first else "refit")

    targets, embeddings = (np.concatenate(o) for o in zip(*outs))
    val_targets = val_outs[0] if len(va) else None
    t_test_logits = teacher_outputs(teacher_dir, teacher, te)[0]
    target_test, member = t_test_logits, None
    if settings.minirocket and len(va):  # MiniRocket's share of the target (teacher/minirocket.py)
        member = minirocket_target(tr, keep, extra, va, te, len(ds.class_names), val_targets, train_settings.seed)
        probabilities = member.pop("probabilities", None)
        if member["weight"]:
            w, (p_train, p_val, p_test) = member["weight"], probabilities
            targets, val_targets = mixed_logits(targets, p_train, w), mixed_logits(val_targets, p_val, w)
            target_test = mixed_logits(t_test_logits, p_test, w)
        member["target_val_accuracy"] = float((val_targets.argmax(1) == va.labels).mean())
        member.update({f"target_test_{k}": v for k, v in classification_metrics(te.labels, target_test).items()})
    student, history = distilled(x_train, y_train, targets, embeddings, first)
    rounds = 2 if (y_train < 0).any() else 1
    if rounds == 2:  # self-training (module docstring)
        def mixed(t_logits, x):
            s_logits = torch.from_numpy(predict_logits(student, x))
            return mean_probabilities([torch.from_numpy(t_logits), s_logits]).numpy()

        targets = mixed(targets, x_train)
        val_targets = mixed(val_targets, x_val) if len(va) else None
        student, history = distilled(x_train, y_train, targets, embeddings, first)
    solo, solo_history = alone(x_train[keep], tr.labels[keep], first)
    candidates = {"distilled": (student, history), "alone": (solo, solo_history)}
    kept = "distilled" if not len(va) or validation_rank(history) >= validation_rank(solo_history) else "alone"
    t_test = target_test.argmax(1)
    side = {}
    for name, (m, h) in candidates.items():
        logits = predict_logits(m, x_test)
        side[name] = {"val_accuracy": h.get("val_accuracy"),
                      **{f"test_{k}": v for k, v in classification_metrics(te.labels, logits).items()},
                      "teacher_agreement": float((logits.argmax(1) == t_test).mean())}  # on the test windows
    final, final_history = candidates[kept]
    if train_settings.refit and len(va):  # the kept kind again, on training + validation windows
        epochs = final_history.get("best_epoch") or final_history["epochs_run"]
        recipe = replace(train_settings, patience=None, epochs=epochs)
        if kept == "distilled":
            final, _ = distilled(np.concatenate([x_train, x_val]), np.concatenate([y_train, va.labels]),
                                 np.concatenate([targets, val_targets]), np.concatenate([embeddings, val_outs[1]]),
                                 recipe)
        else:
            final, _ = alone(np.concatenate([x_train[keep], x_val]), np.concatenate([tr.labels[keep], va.labels]),
                             recipe)
    s_metrics = classification_metrics(te.labels, predict_logits(final, x_test))
    t_metrics = classification_metrics(te.labels, t_test_logits)
    t_val = float((val_outs[0].argmax(1) == va.labels).mean()) if len(va) else None
    mixed = member is not None and member["weight"] > 0
    target_val = member["target_val_accuracy"] if mixed else t_val
    note = None
    if target_val is not None and side["alone"]["val_accuracy"] is not None \
            and target_val < side["alone"]["val_accuracy"]:
        who = "teacher with MiniRocket" if mixed else "teacher"
        note = (f"the {who} ({target_val:.3f}) is less accurate than the student trained alone "
                f"({side['alone']['val_accuracy']:.3f}) on the validation windows: distillation has little to pass on")
    metrics = {**final_history, "test_accuracy": s_metrics["accuracy"], "test_macro_f1": s_metrics["macro_f1"],
               "distilled_from": str(teacher_dir), "distill": asdict(settings), "kept": kept,
               "refit": bool(train_settings.refit and len(va))}
    save_checkpoint(out, Checkpoint(final, pre, ds.class_names, spec, metrics, HeldOut.of(tr, te, spec["seed"])),
                    overwrite=overwrite)
    t_params = teacher.model.parameter_count()
    s_params = count_parameters(final)
    return {
        "dataset": ds.name,
        "windows": {"train_labelled": len(keep), "train_unlabelled": len(y_train) - len(keep), "val": len(va),
                    "test": len(te)},
        "teacher": {"parameters": t_params, "macs": teacher.model.macs(ds.n_channels, ds.length),
                    "val_accuracy": t_val, "test_accuracy": t_metrics["accuracy"],
                    "test_macro_f1": t_metrics["macro_f1"]},
        "alone": side["alone"],
        "distilled": side["distilled"],
        "minirocket": member,
        "gain": round(side["distilled"]["test_accuracy"] - side["alone"]["test_accuracy"], 4),
        "kept": kept,
        "rounds": rounds,
        "refit": metrics["refit"],
        "note": note,
        "student": {"parameters": s_params, "macs": count_macs(final), "width": cfg.width,
                    "test_accuracy": s_metrics["accuracy"], "test_macro_f1": s_metrics["macro_f1"]},
        "compression": round(t_params / s_params, 1),
        "history": final_history,
        "checkpoint": str(out),
    }
