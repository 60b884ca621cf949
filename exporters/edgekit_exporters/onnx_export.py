"""torch -> ONNX (single file, dynamic batch), checked with onnxruntime before it is kept."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from edgekit_runtime.engine import OnnxModel

from .verify import Tolerance, verify_logits

INPUT_NAME = "windows"
OUTPUT_NAME = "logits"
OPSET = 18


def _torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def export_onnx(model: torch.nn.Module, path: str | Path, check_windows: np.ndarray,
                check_labels: np.ndarray | None = None, tolerance: Tolerance = Tolerance()) -> dict:
    """Write `model` (input `[N, C, T]` float32 named "windows", output "logits") to `path` and verify it.

    The example input has batch 2: with batch 1 the exporter can specialise the batch dimension to 1.
    On a mismatch the file is removed and ExportMismatch is raised. Returns the verification metrics.
    """
    path = Path(path)
    model = model.eval()
    example = torch.from_numpy(np.ascontiguousarray(check_windows[:2] if len(check_windows) >= 2
                                                    else np.repeat(check_windows, 2, axis=0)))
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (example,), dynamo=True, external_data=False, opset_version=OPSET, optimize=True,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    program.save(str(path), external_data=False)
    try:
        session = OnnxModel(path)
        metrics = verify_logits(_torch_logits(model, check_windows), session.logits(check_windows),
                                check_labels, tolerance, what=f"ONNX export {path.name}")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    metrics.update(format="onnx", precision="fp32", opset=OPSET, input=INPUT_NAME, output=OUTPUT_NAME,
                   input_shape=["batch", *check_windows.shape[1:]])
    return metrics
