"""torch -> ONNX (single file, dynamic batch), checked with onnxruntime before it is kept."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from edgekit_runtime.engine import OnnxModel

from .support import explain_failure
from .verify import DEFAULT_TOLERANCES, Tolerance, verify_logits

INPUT_NAME = "windows"
OUTPUT_NAME = "logits"
OPSET = 18


def torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def strip_metadata(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Drop per-node stack traces, source paths and doc strings, and give every tensor a short name: for a
    small model the exporter's names (module paths, "_quantized"/"_zero_point" suffixes) take more bytes than
    the int8 weights, and they leak the build machine's paths. The input and output keep their names."""
    graph = proto.graph
    keep = {v.name for v in (*graph.input, *graph.output)}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for init in graph.initializer:
        init.name = short(init.name)
    for i, node in enumerate(graph.node):
        del node.metadata_props[:]
        node.doc_string, node.name = "", f"n{i}"
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del graph.value_info[:]
    graph.doc_string = ""
    proto.doc_string = ""
    return proto


def to_onnx(model: torch.nn.Module, windows: np.ndarray) -> onnx.ModelProto:
    """The fp32 ONNX graph of `model`, constant-folded, without source metadata.

    The example input has batch 2: with batch 1 the exporter can specialise the batch dimension to 1.
    """
    model = model.eval()
    example = torch.from_numpy(np.ascontiguousarray(windows[:2] if len(windows) >= 2
                                                    else np.repeat(windows, 2, axis=0)))
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (example,), dynamo=True, external_data=False, opset_version=OPSET, optimize=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
    except Exception as e:  # the exporter raises many types; name the op and layer when we can
        raise explain_failure(e, model, example, "ONNX") from None
    return strip_metadata(program.model_proto)


def op_histogram(path: str | Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def check_onnx(path: Path, model: torch.nn.Module, check_windows: np.ndarray, check_labels: np.ndarray | None,
               tolerance: Tolerance, what: str) -> dict:
    """Run the file as the board will (the runtime's OnnxModel) and compare with torch; remove it on mismatch."""
    try:
        metrics = verify_logits(torch_logits(model, check_windows), OnnxModel(path).logits(check_windows),
                                check_labels, tolerance, what=what)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    metrics.update(opset=OPSET, input=INPUT_NAME, output=OUTPUT_NAME, input_shape=["batch", *check_windows.shape[1:]])
    return metrics


def export_onnx(model: torch.nn.Module, path: str | Path, check_windows: np.ndarray,
                check_labels: np.ndarray | None = None, tolerance: Tolerance = DEFAULT_TOLERANCES["fp32"]) -> dict:
    """Write `model` (input `[N, C, T]` float32 named "windows", output "logits") to `path` and verify it.

    On a mismatch the file is removed and ExportMismatch is raised. Returns the verification metrics.
    """
    path = Path(path)
    onnx.save(to_onnx(model, check_windows), str(path))
    metrics = check_onnx(path, model, check_windows, check_labels, tolerance, f"ONNX fp32 export {path.name}")
    return {**metrics, "format": "onnx", "precision": "fp32"}
