"""torch -> TFLite with litert-torch (no TensorFlow): fp32, fp16 weights, or static int8 (ai-edge-quantizer).

The converted graph has a fixed batch of 1 (litert-torch cannot lower a symbolic batch for this model), which is
how the board runs it: one window per call.
int8 quantises the float .tflite: the multi-channel Conv2d layers get per-channel int8 weights and int8
activations calibrated on training windows; the rest stays float (see INT8_OPS). Inputs and outputs are float32,
or with `int8_io` int8 (a DEQUANTIZE/QUANTIZE op at each end, scaled to the calibration windows and their
logits; the runtime quantises windows with the model's own scale and zero point). Every file gets compact tensor
names (tflite_graph).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from edgekit_runtime.errors import UserError

from .onnx_export import torch_logits
from .support import explain_failure
from .tflite_graph import finish_tflite
from .verify import DEFAULT_TOLERANCES, Tolerance, verify_logits

PRECISIONS = ("fp32", "fp16", "int8")


@contextlib.contextmanager
def _silenced():
    """Send the converters' progress bars and native (absl/MLIR) log lines to /dev/null; errors still raise."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.ERROR)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def to_tflite(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    """The float .tflite bytes of `model`; a failure names the unsupported op and its layer."""
    import litert_torch

    litert_torch.config.show_progress = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bytes(litert_torch.convert(model, (example,)).model_content())
    except Exception as e:  # litert-torch raises RuntimeError/ValueError/JAX errors; name the op and layer
        raise explain_failure(e, model, example, "TFLite") from None


# The multi-channel convolutions (CONV_2D: scale integration and spatial) in int8, as the ONNX export does:
# XNNPACK runs them int8 and the rest of the graph float in one delegate partition. Quantising more (the
# 1-input-channel branch convolutions, which lower to DEPTHWISE_CONV_2D with a depth multiplier, pooling,
# concatenation, LayerNorm, softmax) splits the graph into partitions that fall back to LiteRT's slower built-in
# kernels; the attention's Linear layers (FULLY_CONNECTED) stay float too: without them the graph was slightly
# faster (benchmarks/results/export_formats.md, "Conv only").
INT8_OPS = ("CONV_2D",)


def quantize_tflite(fp32: bytes, calibration: np.ndarray, ops: tuple[str, ...] = INT8_OPS) -> bytes:
    """Static int8 of a float .tflite with ai-edge-quantizer: per-channel symmetric int8 weights, per-tensor
    asymmetric int8 activations calibrated on `calibration` windows, for the TFLite `ops`; float input and
    output."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, qtyping, quantizer, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    q = quantizer.Quantizer(bytearray(fp32))
    for op in ops:
        q.add_static_config(".*", getattr(qtyping.TFLOperationName, op), activation_num_bits=8, weight_num_bits=8)
    signatures = Interpreter(model_content=fp32).get_signature_list()
    key = next(iter(signatures))
    name = signatures[key]["inputs"][0]
    # The graph takes one window per call, and Quantizer.calibrate merges the per-window ranges by a moving
    # average (0.95): the ranges then follow the last few dozen windows and clip the larger activations of the
    # rest (ACSF1: agreement 0.93). The ranges over all calibration windows (min/max, as onnxruntime's MinMax
    # calibration) keep every window in range.
    recipe = recipe_manager.RecipeManager()
    recipe.load_quantization_recipe(q.get_quantization_recipe())
    calib = calibrator.Calibrator(bytearray(fp32), qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate({key: [{name: calibration[i : i + 1]} for i in range(len(calibration))]}, recipe)
    return bytes(q.quantize(calib.get_model_qsvs()).quantized_model)


def _int8_io_params(model: torch.nn.Module, calibration: np.ndarray) -> tuple[tuple[float, int], tuple[float, int]]:
    """(scale, zero point) of int8 windows and int8 logits over their calibration ranges."""
    def params(x: np.ndarray) -> tuple[float, int]:
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        scale = max(hi - lo, 1e-8) / 255
        return scale, int(np.clip(round(-128 - lo / scale), -128, 127))

    return params(calibration), params(torch_logits(model, calibration))


def _fp16(fp32: bytes) -> bytes:
    """fp16 weights (FLOAT_CASTING in ai-edge-quantizer): half the weight bytes, float compute."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.quantizer import Quantizer

    q = Quantizer(bytearray(fp32))
    q.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                             algorithm_key=AlgorithmName.FLOAT_CASTING)
    return bytes(q.quantize().quantized_model)


def op_histogram(path: str | Path) -> dict[str, int]:
    from ai_edge_litert.interpreter import Interpreter

    ops = Interpreter(model_path=str(path))._get_ops_details()
    return dict(sorted(Counter(o["op_name"] for o in ops).items(), key=lambda kv: (-kv[1], kv[0])))


def export_tflite(model: torch.nn.Module, path: str | Path, check_windows: np.ndarray,
                  check_labels: np.ndarray | None = None, precision: str = "fp32",
                  calibration: np.ndarray | None = None, tolerance: Tolerance | None = None,
                  int8_io: bool = False) -> dict:
    """Convert, write `path`, run it with the runtime's LiteRT backend and compare with torch.

    On a mismatch the file is removed and ExportMismatch is raised. Returns the verification metrics.
    """
    from edgekit_runtime.engine import LiteRTModel

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}")
    if precision == "int8" and calibration is None:
        raise ValueError("int8 needs calibration windows")
    path = Path(path)
    model = model.eval()
    example = torch.from_numpy(np.ascontiguousarray(check_windows[:1]))
    with _silenced():
        content = to_tflite(model, example)
        if precision == "fp16":
            content = _fp16(content)
        elif precision == "int8":
            content = quantize_tflite(content, calibration)
        int8 = precision == "int8" and int8_io
        content = finish_tflite(content, _int8_io_params(model, calibration) if int8 else None)
    path.write_bytes(content)
    try:
        try:
            runner = LiteRTModel(path)
        except UserError as e:  # e.g. an op the converter emits but the interpreter has no kernel for
            raise explain_failure(e, model, example, "TFLite") from None
        exported = np.concatenate([runner.logits(check_windows[i : i + 1]) for i in range(len(check_windows))])
        metrics = verify_logits(torch_logits(model, check_windows), exported, check_labels,
                                tolerance or DEFAULT_TOLERANCES[precision],
                                what=f"TFLite {precision} export {path.name}")
        io = runner.io()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    metrics.update(format="tflite", precision=precision, input_shape=io["inputs"][0]["shape"],
                   input_type=io["inputs"][0]["type"], output_type=io["outputs"][0]["type"])
    if calibration is not None:
        metrics["calibration_windows"] = int(len(calibration))
    return metrics
