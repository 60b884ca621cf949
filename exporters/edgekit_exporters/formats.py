"""One entry point for every format and precision: export, verify against torch, return the metrics.

FORMATS is the registry of export formats. It imports neither torch, onnx nor litert (each format's exporter
is imported when it runs), so the command line can read its choices from it at start."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit_runtime.engine import PRECISIONS as RUNTIME_PRECISIONS
from edgekit_runtime.errors import UserError

from .verify import DEFAULT_TOLERANCES, Tolerance

if TYPE_CHECKING:
    import torch


def _onnx_exporter(precision: str) -> Callable[..., dict]:
    if precision == "int8":
        from .onnx_quantize import export_onnx_int8

        return lambda model, path, windows, labels, calibration, tolerance, quant_format, int8_io: \
            export_onnx_int8(model, path, windows, calibration, labels, tolerance, quant_format)
    from .onnx_export import export_onnx

    return lambda model, path, windows, labels, calibration, tolerance, quant_format, int8_io: \
        export_onnx(model, path, windows, labels, tolerance)


def _tflite_exporter(precision: str) -> Callable[..., dict]:
    from .tflite_export import export_tflite

    return lambda model, path, windows, labels, calibration, tolerance, quant_format, int8_io: \
        export_tflite(model, path, windows, labels, precision, calibration, tolerance, int8_io)


def _onnx_ops(path) -> dict[str, int]:
    from .onnx_export import op_histogram

    return op_histogram(path)


def _tflite_ops(path) -> dict[str, int]:
    from .tflite_export import op_histogram

    return op_histogram(path)


@dataclass(frozen=True)
class Format:
    suffix: str  # of the model file; the runtime maps it back to the format (model_dir.MODEL_FORMATS)
    precisions: tuple[str, ...]
    # precision -> the export function (model, path, windows, labels, calibration, tolerance, quant_format,
    # int8_io) -> verification metrics; imports the format's packages
    exporter: Callable[[str], Callable[..., dict]]
    op_histogram: Callable[[str | Path], dict[str, int]]
    packages: tuple[str, ...]  # pip distributions an export needs (their versions go into the manifest)
    # int8 weights are symmetric per output channel on [-levels, levels] (scale max|w| / levels); quantisation-
    # aware training rounds to the same grid, so that the export's own rounding of the weights is exact
    int8_weight_levels: int


FORMATS = {
    # ONNX: 7-bit weights, ORT's reduce_range (see onnx_quantize); TFLite: ai-edge-quantizer's narrow int8 range
    "onnx": Format(".onnx", ("fp32", "int8"), _onnx_exporter, _onnx_ops, ("onnx", "onnxruntime"), 64),
    "tflite": Format(".tflite", ("fp32", "fp16", "int8"), _tflite_exporter, _tflite_ops,
                     ("litert-torch", "ai-edge-litert"), 127),
}
PRECISIONS = {name: f.precisions for name, f in FORMATS.items()}
# every precision some format exports, in the runtime's order
ALL_PRECISIONS = tuple(p for p in RUNTIME_PRECISIONS if any(p in f.precisions for f in FORMATS.values()))


def model_filename(fmt: str, precision: str) -> str:
    return f"model{'' if precision == 'fp32' else '-' + precision}{FORMATS[fmt].suffix}"


def check_choice(fmt: str, precision: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if precision not in FORMATS[fmt].precisions:
        raise UserError(f"{fmt} export supports precision {', '.join(FORMATS[fmt].precisions)}, not {precision}")


def load_exporter(fmt: str, precision: str) -> Callable[..., dict]:
    """Import what exporting `fmt`/`precision` needs. Callers that stage files do it first: a signal that lands
    while a native extension (onnx, litert) is being imported aborts the process instead of raising."""
    check_choice(fmt, precision)
    return FORMATS[fmt].exporter(precision)


def export_model(model: torch.nn.Module, path: str | Path, fmt: str, precision: str, check_windows: np.ndarray,
                 check_labels: np.ndarray | None = None, calibration: np.ndarray | None = None,
                 tolerance: Tolerance | None = None, quant_format: str = "qoperator", int8_io: bool = False) -> dict:
    """Write `model` as `fmt`/`precision` to `path`, verified on `check_windows` (see verify.DEFAULT_TOLERANCES).

    int8 needs `calibration` windows from the training split (calibration.calibration_windows checks them).
    `quant_format` is for ONNX int8; `int8_io` keeps TFLite int8 inputs/outputs int8 instead of float32.
    Raises ExportMismatch (nothing left at `path`) when the file does not compute what torch computes.
    """
    export = load_exporter(fmt, precision)
    tolerance = tolerance or DEFAULT_TOLERANCES[precision]
    metrics = export(model, path, check_windows, check_labels, calibration, tolerance, quant_format, int8_io)
    metrics["tolerance"] = {k: v for k, v in tolerance.__dict__.items() if v is not None}
    return metrics


def op_histogram(path: str | Path) -> dict[str, int]:
    """Op type -> count in an exported file."""
    suffix = Path(path).suffix
    for f in FORMATS.values():
        if f.suffix == suffix:
            return f.op_histogram(path)
    raise UserError(f"{path}: not an exported model file ({', '.join(f.suffix for f in FORMATS.values())})")
