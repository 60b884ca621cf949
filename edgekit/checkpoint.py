"""Checkpoints: a directory with the state dict (`model.pt`, loaded with weights_only=True) and a JSON file
(`checkpoint.json`) holding everything else: model config, preprocessing, classes, data spec and metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import atomic_directory
from edgekit_runtime.model_dir import read_json
from edgekit_runtime.preprocess import Preprocessing

from . import __version__
from .models import MSACNN, MSACNNConfig

WEIGHTS = "model.pt"
META = "checkpoint.json"
FORMAT = 1


@dataclass
class Checkpoint:
    model: MSACNN
    preprocessing: Preprocessing
    classes: tuple[str, ...]
    data: dict  # how to reload the training data and its split (see edgekit.cli)
    metrics: dict


def save_checkpoint(path: str | Path, ckpt: Checkpoint, overwrite: bool = False) -> None:
    meta = {
        "format": FORMAT,
        "edgekit_version": __version__,
        "model": {"kind": "msa_cnn", "config": ckpt.model.cfg.to_dict()},
        "preprocess": ckpt.preprocessing.to_json(),
        "classes": list(ckpt.classes),
        "data": ckpt.data,
        "metrics": ckpt.metrics,
    }
    with atomic_directory(path, overwrite=overwrite) as tmp:
        torch.save(ckpt.model.state_dict(), tmp / WEIGHTS)
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a checkpoint directory (expected {WEIGHTS} and {META})")
    meta = read_json(path / META)
    if meta.get("format") != FORMAT or meta.get("model", {}).get("kind") != "msa_cnn":
        raise UserError(f"{path / META}: unsupported checkpoint format or model kind")
    try:
        cfg = MSACNNConfig(**meta["model"]["config"])
        model = MSACNN(cfg)
        state = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except FileNotFoundError:
        raise UserError(f"{path}: {WEIGHTS} is missing") from None
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"{path}: cannot load the model ({str(e).splitlines()[0]})") from None
    model.eval()
    return Checkpoint(model, Preprocessing.from_json(meta["preprocess"]), tuple(meta["classes"]),
                      meta.get("data", {}), meta.get("metrics", {}))
