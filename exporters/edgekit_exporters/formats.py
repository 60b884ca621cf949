"""One entry point for every format and precision: export, verify against torch, return the metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgekit_runtime.errors import UserError

from .verify import DEFAULT_TOLERANCES, Tolerance

PRECISIONS = {"onnx": ("fp32", "int8"), "tflite": ("fp32", "fp16", "int8")}
SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite"}


def model_filename(fmt: str, precision: str) -> str:
    return f"model{'' if precision == 'fp32' else '-' + precision}{SUFFIXES[fmt]}"


def check_choice(fmt: str, precision: str) -> None:
    if fmt not in PRECISIONS:
        raise UserError(f"unknown format {fmt!r}; choose from {', '.join(PRECISIONS)}")
    if precision not in PRECISIONS[fmt]:
        raise UserError(f"{fmt} export supports precision {', '.join(PRECISIONS[fmt])}, not {precision}")


def export_model(model: torch.nn.Module, path: str | Path, fmt: str, precision: str, check_windows: np.ndarray,
                 check_labels: np.ndarray | None = None, calibration: np.ndarray | None = None,
                 tolerance: Tolerance | None = None, quant_format: str = "qoperator", int8_io: bool = False) -> dict:
    """Write `model` as `fmt`/`precision` to `path`, verified on `check_windows` (see verify.DEFAULT_TOLERANCES).

    int8 needs `calibration` windows from the training split (calibration.calibration_windows checks them).
    `quant_format` is for ONNX int8; `int8_io` keeps TFLite int8 inputs/outputs int8 instead of float32.
    Raises ExportMismatch (nothing left at `path`) when the file does not compute what torch computes.
    """
    check_choice(fmt, precision)
    tolerance = tolerance or DEFAULT_TOLERANCES[precision]
    if fmt == "onnx" and precision == "fp32":
        from .onnx_export import export_onnx

        metrics = export_onnx(model, path, check_windows, check_labels, tolerance)
    elif fmt == "onnx":
        from .onnx_quantize import export_onnx_int8

        metrics = export_onnx_int8(model, path, check_windows, calibration, check_labels, tolerance, quant_format)
    else:
        from .tflite_export import export_tflite

        metrics = export_tflite(model, path, check_windows, check_labels, precision, calibration, tolerance, int8_io)
    metrics["tolerance"] = {k: v for k, v in tolerance.__dict__.items() if v is not None}
    return metrics


def op_histogram(path: str | Path) -> dict[str, int]:
    """Op type -> count in an exported file."""
    if Path(path).suffix == SUFFIXES["onnx"]:
        from .onnx_export import op_histogram as histogram
    else:
        from .tflite_export import op_histogram as histogram
    return histogram(path)
