"""Teacher checkpoints: `model.pt` (state dict), `teacher.json` (config, preprocessing, data spec, progress,
metrics) and, for runs that can resume, `trainer.pt` (optimizer and scheduler state). Every tensor file loads
with weights_only=True."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import atomic_directory
from edgekit_runtime.model_dir import read_json
from edgekit_runtime.preprocess import Preprocessing

from .. import __version__
from .model import Teacher, TeacherConfig

WEIGHTS, META, TRAINER = "model.pt", "teacher.json", "trainer.pt"


@dataclass
class TeacherCheckpoint:
    model: Teacher
    preprocessing: Preprocessing
    data: dict
    classes: tuple[str, ...] = ()
    state: dict = field(default_factory=dict)  # progress and metrics: step, history, test metrics...
    trainer: dict | None = None  # optimizer/scheduler state dicts


def save_teacher(path, ckpt: TeacherCheckpoint) -> None:
    meta = {"format": 1, "edgekit_version": __version__, "config": ckpt.model.cfg.to_dict(),
            "preprocess": ckpt.preprocessing.to_json(), "data": ckpt.data, "classes": list(ckpt.classes),
            "state": ckpt.state}
    with atomic_directory(path, overwrite=True) as tmp:
        torch.save(ckpt.model.state_dict(), tmp / WEIGHTS)
        if ckpt.trainer is not None:
            torch.save(ckpt.trainer, tmp / TRAINER)
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")


def load_teacher(path) -> TeacherCheckpoint:
    path = Path(path)
    if not (path / META).is_file():
        raise UserError(f"{path}: not a teacher checkpoint (no {META})")
    meta = read_json(path / META)
    try:
        model = Teacher(TeacherConfig(**meta["config"]))
        model.load_state_dict(torch.load(path / WEIGHTS, map_location="cpu", weights_only=True))
        trainer = torch.load(path / TRAINER, map_location="cpu", weights_only=True) if (path / TRAINER).is_file() \
            else None
    except FileNotFoundError:
        raise UserError(f"{path}: {WEIGHTS} is missing") from None
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"{path}: cannot load the teacher ({str(e).splitlines()[0]})") from None
    return TeacherCheckpoint(model, Preprocessing.from_json(meta["preprocess"]), meta.get("data", {}),
                             tuple(meta.get("classes", ())), meta.get("state", {}), trainer)
