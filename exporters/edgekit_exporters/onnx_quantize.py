"""Static int8 ONNX: onnxruntime post-training quantisation of the fp32 graph, calibrated on training windows.

Measured on the MSA-CNN student (benchmarks/results/export_formats.md, 2-core x86, one thread): QOperator
(QLinearConv/QLinearMatMul) beats QDQ, whose extra DequantizeLinear nodes cost more than int8 saves. Which ops
are int8 matters more: every boundary between an int8 and a float op costs a Quantize/Dequantize pair, and
ORT's int8 kernels are no faster than its fp32 ones at these channel counts. The default quantises the
convolutions after the multi-scale branches (scale integration and spatial, most of the convolution weights, one
int8 chain) and leaves float the branch convolutions, whose single input channel is the raw normalised signal,
and the attention block (MatMul, LayerNorm, softmax, the residual adds), as the TFLite export does. Quantising the
branches too (their input, pooling and concatenation) moved the argmax of 7% of ACSF1's test windows, whose
heavy-tailed power readings (up to 12 standard deviations) leave few int8 steps for the common values; without
them, 2%. `op_types=None` quantises every op ORT can (smallest file).

Weights use 7 bits (`reduce_range`): with 8, ORT's x86 AVX2 kernels saturate int16 sums of u8×s8 products and
the file computes something else on the export machine than on the board.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from .onnx_export import INPUT_NAME, check_onnx, strip_metadata, to_onnx
from .verify import DEFAULT_TOLERANCES, Tolerance

QUANT_FORMATS = ("qoperator", "qdq")
# convolutions (and their ReLUs, fused), except those with one input channel: the multi-scale branches (see the
# module docstring)
INT8_OPS = ("Conv", "Relu")


def branch_convolutions(model: onnx.ModelProto) -> list[str]:
    """Names of the Conv nodes whose weight has a single input channel: the branch convolutions on the signal."""
    weights = {t.name: t for t in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type == "Conv" and n.input[1] in weights and weights[n.input[1]].dims[1] == 1]


class _Windows:
    """onnxruntime's CalibrationDataReader protocol: one window per call, None when done."""

    def __init__(self, windows: np.ndarray):
        self._it = iter(range(len(windows)))
        self._windows = windows

    def get_next(self):
        i = next(self._it, None)
        return None if i is None else {INPUT_NAME: self._windows[i : i + 1]}

    def rewind(self):
        self._it = iter(range(len(self._windows)))


def quantize_onnx(fp32: onnx.ModelProto, out: str | Path, calibration: np.ndarray, quant_format: str = "qoperator",
                  per_channel: bool = True, op_types: tuple[str, ...] | None = INT8_OPS) -> None:
    """Write the static int8 version of `fp32` to `out`. `op_types=None` quantises every op ORT can."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if quant_format not in QUANT_FORMATS:
        raise ValueError(f"quant_format must be one of {QUANT_FORMATS}")
    with tempfile.TemporaryDirectory() as tmp:
        src, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        onnx.save(fp32, str(src))
        quant_pre_process(str(src), str(pre))  # shape inference + graph optimisation, as ORT recommends
        qdq = quant_format == "qdq"
        exclude = branch_convolutions(onnx.load(str(pre))) if op_types else []
        quantize_static(
            str(pre), str(out), _Windows(calibration),
            quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
            op_types_to_quantize=list(op_types) if op_types else None, nodes_to_exclude=exclude,
            per_channel=per_channel,
            # QOperator kernels on x86/ARM are fastest with uint8 activations and int8 weights
            activation_type=QuantType.QInt8 if qdq else QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # 7-bit weights: on x86 without VNNI (AVX2, most laptops and CI machines), ORT's u8×s8 kernels sum
            # pairs of products in saturating int16, which flipped up to 11% of the classes of a univariate
            # student; with 7 bits no pair can saturate. ARM kernels are exact either way.
            reduce_range=True,
        )
    onnx.save(strip_metadata(onnx.load(str(out))), str(out))


def export_onnx_int8(model: torch.nn.Module, path: str | Path, check_windows: np.ndarray, calibration: np.ndarray,
                     check_labels: np.ndarray | None = None, tolerance: Tolerance = DEFAULT_TOLERANCES["int8"],
                     quant_format: str = "qoperator") -> dict:
    """Export, quantise with `calibration` windows (see calibration.calibration_windows), verify against torch."""
    path = Path(path)
    quantize_onnx(to_onnx(model, check_windows), path, calibration, quant_format)
    metrics = check_onnx(path, model, check_windows, check_labels, tolerance, f"ONNX int8 export {path.name}")
    return {**metrics, "format": "onnx", "precision": "int8", "quant_format": quant_format,
            "int8_ops": list(INT8_OPS), "per_channel": True, "calibration_windows": int(len(calibration))}
