"""Checkpoints: a directory with the state dict (`model.pt`, loaded with weights_only=True), a JSON file
(`checkpoint.json`: model config, preprocessing, classes, data spec with its split and the source's digest,
metrics) and the windows later stages verify on (`data.npz`: test windows and labels, calibration windows from
the training split, before preprocessing), so export, int8 export and bundle need neither the data files nor a
re-split."""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import atomic_directory
from edgekit_runtime.model_dir import read_json, sha256_file
from edgekit_runtime.preprocess import Preprocessing

from . import __version__
from .models import MSACNN, STUDENTS, student_kind

WEIGHTS = "model.pt"
META = "checkpoint.json"
HELD_OUT = "data.npz"
FORMAT = 1
CALIBRATION_WINDOWS = 256  # training windows kept for int8 calibration (export --calibration-size at most this)
MAX_TEST_BYTES = 64 << 20  # test windows kept beyond this: every k-th


@dataclass
class HeldOut:
    """The windows a checkpoint keeps, before the model's preprocessing."""

    test_values: np.ndarray  # [N, C, T] float32
    test_labels: np.ndarray  # [N] class indices
    calibration: np.ndarray  # [M, C, T] float32, a seeded sample of the training split
    filtered: bool  # cut from filtered recordings (WindowSet.filtered)

    @classmethod
    def of(cls, train, test, seed: int) -> "HeldOut":
        """From the training and test WindowSets of a run."""
        keep = max(1, MAX_TEST_BYTES // max(1, test.values[:1].nbytes))
        test_index = np.arange(len(test)) if len(test) <= keep else \
            np.linspace(0, len(test) - 1, keep).round().astype(int)
        calib = np.arange(len(train))
        if len(train) > CALIBRATION_WINDOWS:
            calib = np.sort(np.random.default_rng(seed).choice(len(train), CALIBRATION_WINDOWS, replace=False))
        return cls(test.values[test_index], test.labels[test_index].astype(np.int64), train.values[calib],
                   bool(test.filtered))

    def windows(self, which: str, ckpt: "Checkpoint"):
        """The "test" or "calibration" windows as a WindowSet (calibration windows are unlabelled)."""
        from .data import WindowSet

        values = self.test_values if which == "test" else self.calibration
        labels = self.test_labels if which == "test" else None
        return WindowSet(values, labels, ckpt.preprocessing.channels, ckpt.classes,
                         ckpt.preprocessing.sampling_rate, filtered=self.filtered)


@dataclass
class Checkpoint:
    model: MSACNN
    preprocessing: Preprocessing
    classes: tuple[str, ...]
    data: dict  # how to reload the training data and its split (see edgekit.cli)
    metrics: dict
    held_out: HeldOut | None = None  # None: a checkpoint written before checkpoints kept their windows

    def windows(self, which: str):
        """The checkpoint's "test" or "calibration" windows (a WindowSet before preprocessing); an older
        checkpoint without them reloads its data and split."""
        if self.held_out is not None:
            return self.held_out.windows(which, self)
        from .data import load_spec
        from .data import split_from_spec

        train, _, test = split_from_spec(load_spec(self.data), self.data)
        return test if which == "test" else train


def save_checkpoint(path: str | Path, ckpt: Checkpoint, overwrite: bool = False) -> None:
    meta = {
        "format": FORMAT,
        "edgekit_version": __version__,
        "model": {"kind": student_kind(ckpt.model), "config": ckpt.model.cfg.to_dict()},
        "preprocess": ckpt.preprocessing.to_json(),
        "classes": list(ckpt.classes),
        "data": ckpt.data,
        "metrics": ckpt.metrics,
    }
    with atomic_directory(path, overwrite=overwrite) as tmp:
        torch.save(ckpt.model.state_dict(), tmp / WEIGHTS)
        meta["weights_sha256"] = sha256_file(tmp / WEIGHTS)
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        if (h := ckpt.held_out) is not None:
            np.savez_compressed(tmp / HELD_OUT, test_values=h.test_values, test_labels=h.test_labels,
                                calibration=h.calibration, filtered=np.array(h.filtered))


def verify_weights(weights: Path, recorded: str | None, meta_name: str) -> None:
    """Refuse a weights file whose sha256 differs from the one `meta_name` beside it records (None: not
    recorded), before torch reads it."""
    if recorded is not None and recorded != sha256_file(weights):
        raise UserError(f"{weights}: sha256 differs from the one recorded in {meta_name}; the file is damaged or was "
                        "replaced, and is not loaded")


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a checkpoint directory (expected {WEIGHTS} and {META})")
    meta = read_json(path / META)
    kind = meta.get("model", {}).get("kind")
    if meta.get("format") != FORMAT or not isinstance(kind, str) or kind not in STUDENTS:
        raise UserError(f"{path / META}: unsupported checkpoint format or model kind")
    if not (path / WEIGHTS).is_file():
        raise UserError(f"{path}: {WEIGHTS} is missing")
    # checkpoints written before the digest was recorded have none; torch.load's errors below catch most damage
    verify_weights(path / WEIGHTS, meta.get("weights_sha256"), META)
    try:
        model_class, config_class = STUDENTS[kind]
        model = model_class(config_class(**meta["model"]["config"]))
        state = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError, OSError, EOFError, pickle.UnpicklingError,
            zipfile.BadZipFile) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: cannot load the model ({reason})") from None
    model.eval()
    return Checkpoint(model, Preprocessing.from_json(meta["preprocess"]), tuple(meta["classes"]),
                      meta.get("data", {}), meta.get("metrics", {}), _load_held_out(path))


def _load_held_out(path: Path) -> HeldOut | None:
    if not (path / HELD_OUT).exists():
        return None
    try:
        with np.load(path / HELD_OUT, allow_pickle=False) as z:
            return HeldOut(z["test_values"], z["test_labels"], z["calibration"], bool(z["filtered"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        raise UserError(f"{path / HELD_OUT}: unreadable, not the windows archive edgekit writes") from None
