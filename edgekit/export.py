"""`edgekit export`: a checkpoint to a verified model directory for the board."""

from __future__ import annotations

import json
import platform
from pathlib import Path

from edgekit_runtime.files import atomic_directory
from edgekit_runtime.model_dir import MANIFEST, PREPROCESS, sha256_file

from . import __version__
from .checkpoint import load_checkpoint
from .data import load_spec
from .models import count_parameters
from .train import split_from_spec

MODEL_FILE = "model.onnx"


def export_checkpoint(checkpoint: str, out: str, atol: float = 1e-4, overwrite: bool = False) -> dict:
    """Export to ONNX, verify on the checkpoint's held-out test windows, and write the model directory atomically.

    Returns the manifest."""
    import onnxruntime
    import torch
    from edgekit_exporters import Tolerance, export_onnx

    ckpt = load_checkpoint(checkpoint)
    ds = load_spec(ckpt.data)
    _, _, test = split_from_spec(ds, ckpt.data)
    windows = ckpt.preprocessing.prepare_windows(test.values)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        verification = export_onnx(ckpt.model, tmp / MODEL_FILE, windows, test.labels, Tolerance(max_abs_diff=atol))
        preprocess = {**ckpt.preprocessing.to_json(), "classes": list(ckpt.classes)}
        (tmp / PREPROCESS).write_text(json.dumps(preprocess, indent=2) + "\n")
        manifest = {
            "format": 1,
            "files": {name: sha256_file(tmp / name) for name in (MODEL_FILE, PREPROCESS)},
            "model": {"file": MODEL_FILE, "bytes": (tmp / MODEL_FILE).stat().st_size, "architecture": "msa_cnn",
                      "parameters": count_parameters(ckpt.model), "test_accuracy": ckpt.metrics.get("test_accuracy")},
            "verification": verification,
            "versions": {"edgekit": __version__, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                         "python": platform.python_version()},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
