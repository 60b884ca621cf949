"""`edgekit export`: a checkpoint to a verified model directory for the board."""

from __future__ import annotations

import json
import platform

import numpy as np

from edgekit_runtime.files import atomic_directory
from edgekit_runtime.model_dir import MANIFEST, PREPROCESS, sha256_file

from . import __version__
from .checkpoint import Checkpoint, load_checkpoint
from .data import model_inputs
from .models import count_parameters, equalize_activations, student_kind
from .settings import ExportSettings


def calibration_inputs(ckpt: Checkpoint, size: int) -> np.ndarray:
    """Model inputs of up to `size` of the training windows `ckpt` keeps for calibration: int8's activation ranges
    are fitted, and the student's equalised (quantisation-aware training included), on these."""
    from edgekit_exporters import calibration_windows

    return calibration_windows(model_inputs(ckpt.preprocessing, ckpt.windows("calibration")), size,
                               seed=ckpt.data.get("seed", 0))


def export_checkpoint(checkpoint: str, out: str, settings: ExportSettings = ExportSettings(), overwrite: bool = False,
                      extra: dict | None = None) -> dict:
    """Export as `settings.format`/`settings.precision`, verify on the checkpoint's held-out test windows, write
    the model directory atomically, from the windows the checkpoint keeps. int8 is calibrated on
    `settings.calibration_size` windows of the training split (at most checkpoint.CALIBRATION_WINDOWS), after the
    student's activation ranges are equalised on them (models.msa_cnn.equalize_activations). Tolerances left as
    None take the precision's defaults (edgekit_exporters.DEFAULT_TOLERANCES). `extra` entries are added to the
    manifest. Returns the manifest."""
    import torch
    from edgekit_exporters import DEFAULT_TOLERANCES, export_model, model_filename, op_histogram
    from edgekit_exporters.formats import load_exporter

    fmt, precision = settings.format, settings.precision
    load_exporter(fmt, precision)  # before the staging directory exists (see load_exporter)
    tolerance = DEFAULT_TOLERANCES[precision].merged(**settings.tolerances())
    ckpt = load_checkpoint(checkpoint)
    test = ckpt.windows("test")
    windows = model_inputs(ckpt.preprocessing, test)
    calibration = None
    if precision == "int8":
        calibration = calibration_inputs(ckpt, settings.calibration_size)
    model = ckpt.model
    if precision == "int8" and "qat" not in ckpt.metrics:  # QAT weights are on the int8 grid already
        model = equalize_activations(model, torch.from_numpy(calibration))
    name = model_filename(fmt, precision)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        verification = export_model(model, tmp / name, fmt, precision, windows, test.labels, calibration,
                                    tolerance, settings.quant_format, settings.int8_io)
        _hold_to_model_before_qat(ckpt.metrics, verification, tolerance, f"{name} export")
        preprocess = {**ckpt.preprocessing.to_json(), "classes": list(ckpt.classes)}
        (tmp / PREPROCESS).write_text(json.dumps(preprocess, indent=2) + "\n")
        manifest = {
            "format": 1,
            "files": {n: sha256_file(tmp / n) for n in (name, PREPROCESS)},
            "model": {"file": name, "format": fmt, "precision": precision, "bytes": (tmp / name).stat().st_size,
                      "architecture": student_kind(ckpt.model), "parameters": count_parameters(ckpt.model),
                      "test_accuracy": ckpt.metrics.get("test_accuracy"), "ops": op_histogram(tmp / name)},
            "verification": verification,
            "versions": {"edgekit": __version__, "torch": torch.__version__, **_backend_versions(fmt),
                         "python": platform.python_version()},
            **(extra or {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _hold_to_model_before_qat(metrics: dict, verification: dict, tolerance, what: str) -> None:
    """A QAT checkpoint's export is verified against the tuned model; its accuracy drop is also held against the
    float model QAT started from, so tuning cannot spend the user's --max-accuracy-drop unseen."""
    from edgekit_exporters import ExportMismatch

    before = metrics.get("qat", {}).get("test_accuracy_float_before")
    if before is None or "accuracy_exported" not in verification:
        return
    failure = tolerance.drop_failure(before - verification["accuracy_exported"], verification.get("windows", 0))
    if failure:
        raise ExportMismatch(f"{what} after quantisation-aware training: {failure} against the model before it "
                             f"({before:.4f} -> {verification['accuracy_exported']:.4f}); nothing written")


def _backend_versions(fmt: str) -> dict:
    from importlib.metadata import version

    from edgekit_exporters.formats import FORMATS

    return {p: version(p) for p in FORMATS[fmt].packages}
