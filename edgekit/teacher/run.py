"""Starting or resuming a pretraining run on a dataset."""

from __future__ import annotations

import torch

from ..data import load_spec, resolve_split, split_from_spec
from ..normalization import fit_preprocessing
from ..settings import SplitSettings, TeacherSettings
from .data import prepare
from .finetune import start_encoder
from .pretrain import pretrain, resume_checkpoint
from .settings import MaskSettings, PretrainSettings
from .store import TeacherCheckpoint


def start_or_resume(spec: dict, out: str, teacher: TeacherSettings, settings: PretrainSettings,
                    split: SplitSettings, resume: bool = False, progress: bool = True) -> dict | None:
    """Pretrain on a dataset's training windows, from scratch or continuing `teacher.pretrained` (a pretrained
    teacher: "general" or a run directory); returns the summary on rank 0 (None on the other ranks under
    torchrun). A resumed run keeps the data and settings it recorded."""
    s = settings
    if resume:
        ckpt = resume_checkpoint(out)
        d = ckpt.state["settings"]
        spec, s = ckpt.data, PretrainSettings(**{**d, "mask": MaskSettings(**d["mask"])})
        ds = load_spec(spec)
    else:
        ds = load_spec(spec)
        method, test_groups = resolve_split(ds, split.split, split.test_groups)
        spec = {**spec, "split": method, "test_groups": None if test_groups is None else list(test_groups),
                "seed": s.seed, "val": split.val, "test": split.test}
    train, val, _ = split_from_spec(ds, spec)
    if not resume:
        pre = fit_preprocessing(train, "auto", spec.get("stride") or ds.length)
        torch.manual_seed(s.seed)  # every rank builds the same initial weights
        model, _ = start_encoder(teacher)  # this data's preprocessing, whatever the encoder's own
        ckpt = TeacherCheckpoint(model, pre, spec, state={"size": teacher.pretrained or teacher.size})
    patch = ckpt.model.cfg.patch
    summary = pretrain(ckpt, [prepare(train, ckpt.preprocessing, patch)], [prepare(val, ckpt.preprocessing, patch)],
                       s, out, progress=progress)
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return None
    return {**summary, "dataset": ds.name, "windows": {"train": len(train), "val": len(val)},
            "parameters": ckpt.model.parameter_count(), "attention": ckpt.model.cfg.attention, "checkpoint": out}
