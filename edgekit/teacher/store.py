"""Teacher checkpoints: `model.pt` (state dict), `teacher.json` (config, number of ensemble members, preprocessing,
data spec, progress, metrics, and the sha256 of `model.pt`) and, for runs that can resume, `trainer.pt` (optimizer
and scheduler state).

Every tensor file loads with weights_only=True, and `model.pt` only after its sha256 matched the one recorded in
`teacher.json`, so a corrupted or swapped weights file is refused before torch reads it. Weights may be stored in
fp16 (the shipped general teacher) and are loaded as fp32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import atomic_directory
from edgekit_runtime.model_dir import read_json, sha256_file
from edgekit_runtime.preprocess import Preprocessing

from .. import __version__
from ..checkpoint import verify_weights
from .ensemble import Ensemble
from .model import Teacher, TeacherConfig

WEIGHTS, META, TRAINER = "model.pt", "teacher.json", "trainer.pt"


@dataclass
class TeacherCheckpoint:
    model: Teacher | Ensemble
    preprocessing: Preprocessing | None  # None for an encoder pretrained on many datasets (the general teacher)
    data: dict
    classes: tuple[str, ...] = ()
    state: dict = field(default_factory=dict)  # progress and metrics: step, history, test metrics...
    trainer: dict | None = None  # optimizer/scheduler state dicts


def save_teacher(path, ckpt: TeacherCheckpoint, half: bool = False) -> None:
    weights = ckpt.model.state_dict()
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    with atomic_directory(path, overwrite=True) as tmp:
        torch.save(weights, tmp / WEIGHTS)
        if ckpt.trainer is not None:
            torch.save(ckpt.trainer, tmp / TRAINER)
        meta = {"format": 2, "edgekit_version": __version__, "weights_sha256": sha256_file(tmp / WEIGHTS),
                "config": ckpt.model.cfg.to_dict(),
                "members": len(ckpt.model.members) if isinstance(ckpt.model, Ensemble) else None,
                "preprocess": None if ckpt.preprocessing is None else ckpt.preprocessing.to_json(),
                "data": ckpt.data, "classes": list(ckpt.classes), "state": ckpt.state}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")


def load_teacher(path) -> TeacherCheckpoint:
    path = Path(path)
    if not (path / META).is_file():
        raise UserError(f"{path}: not a teacher checkpoint (no {META})")
    meta = read_json(path / META)
    if not (path / WEIGHTS).is_file():
        raise UserError(f"{path}: {WEIGHTS} is missing")
    if "weights_sha256" not in meta:
        raise UserError(f"{path / META}: records no weights_sha256; not a teacher edgekit wrote")
    verify_weights(path / WEIGHTS, meta["weights_sha256"], META)
    try:
        config = meta["config"]
        if config.get("n_classes") and "pooling" not in config:  # fine-tuned before the spread was pooled
            config = {**config, "pooling": "mean"}
        cfg, members = TeacherConfig(**config), meta.get("members")
        model = Teacher(cfg) if members is None else Ensemble([Teacher(cfg) for _ in range(int(members))])
        weights = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
        trainer = torch.load(path / TRAINER, map_location="cpu", weights_only=True) if (path / TRAINER).is_file() \
            else None
        pre = None if meta["preprocess"] is None else Preprocessing.from_json(meta["preprocess"])
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as e:
        raise UserError(f"{path}: cannot load the teacher ({str(e).splitlines()[0]})") from None
    return TeacherCheckpoint(model.eval(), pre, meta.get("data", {}), tuple(meta.get("classes", ())),
                             meta.get("state", {}), trainer)
