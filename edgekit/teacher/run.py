"""Starting or resuming a pretraining run from the command line's options."""

from __future__ import annotations

import torch

from edgekit_runtime.errors import UserError

from ..data import load_spec, resolve_split, split_from_spec
from ..normalization import fit_preprocessing
from .data import prepare
from .general import resolve
from .model import Teacher, TeacherConfig
from .pretrain import pretrain, resume_checkpoint
from .settings import MaskSettings, PretrainSettings
from .store import TeacherCheckpoint, load_teacher


def _settings(d: dict) -> PretrainSettings:
    return PretrainSettings(**{**d, "mask": MaskSettings(**d["mask"])})


def start_or_resume(spec: dict, out: str, model_options: dict, settings: dict, split: dict, resume: bool = False,
                    start_from: str | None = None, progress: bool = True) -> dict | None:
    """Pretrain on a dataset's training windows, from scratch or continuing `start_from` (a pretrained teacher:
    "general" or a run directory); returns the summary on rank 0 (None on the other ranks under torchrun)."""
    if resume:
        ckpt = resume_checkpoint(out)
        spec, s = ckpt.data, _settings(ckpt.state["settings"])
        ds = load_spec(spec)
    else:
        try:
            s = _settings(settings)
        except ValueError as e:
            raise UserError(str(e)) from None
        ds = load_spec(spec)
        method, test_groups = resolve_split(ds, split["split_method"], split["test_groups"])
        spec = {**spec, "split": method, "test_groups": test_groups, "seed": s.seed, "val": split["val"],
                "test": split["test"]}
    train, val, _ = split_from_spec(ds, spec)
    if not resume:
        pre = fit_preprocessing(train, "auto", spec.get("stride") or ds.length)
        torch.manual_seed(s.seed)  # every rank builds the same initial weights
        size = model_options.pop("size")
        if start_from is not None:
            model, size = load_teacher(resolve(start_from)).model.encoder_only(), start_from
        else:
            model = Teacher(TeacherConfig.of_size(size, **model_options))
        ckpt = TeacherCheckpoint(model, pre, spec, state={"size": size})
    patch = ckpt.model.cfg.patch
    summary = pretrain(ckpt, [prepare(train, ckpt.preprocessing, patch)], [prepare(val, ckpt.preprocessing, patch)],
                       s, out, progress=progress)
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return None
    return {**summary, "dataset": ds.name, "windows": {"train": len(train), "val": len(val)},
            "parameters": ckpt.model.parameter_count(), "attention": ckpt.model.cfg.attention, "checkpoint": out}
