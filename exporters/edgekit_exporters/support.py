"""Turn a converter failure into one line that names the op, the layer it comes from, and what to use instead.

Converters report failures as aten op names (litert-torch: "Lowering not found: aten.median.dim"), as TFLite
opcodes the interpreter has no kernel for ("STABLEHLO_SORT"), or as deep tracebacks. We map either back to
the torch.export graph of the user's model, whose nodes record the module they came from.
"""

from __future__ import annotations

import re

import torch

from edgekit_runtime.errors import UserError

SUPPORTED = ("Conv2d (1xk kernels for time), Linear, matmul, softmax, LayerNorm, BatchNorm2d, GELU/ReLU, "
             "AvgPool2d, mean, add/mul, reshape/transpose")

# aten op (without overload) -> what to write instead
SUGGESTIONS = {
    "median": "use mean or AvgPool2d",
    "sort": "use max/amax/argmax, or rank outside the model",
    "topk": "use max/amax/argmax, or rank outside the model",
    "argsort": "use argmax, or rank outside the model",
    "erfinv": "use a closed-form activation (GELU, tanh, sigmoid)",
    "_linalg_svd": "compute the decomposition in preprocessing",
    "_fft_r2c": "compute spectral features in preprocessing, or learn a Conv2d filter bank",
    "fft_rfft": "compute spectral features in preprocessing, or learn a Conv2d filter bank",
    "stft": "compute spectral features in preprocessing, or learn a Conv2d filter bank",
    "conv1d": "write it as Conv2d with a 1xk kernel on a [B, 1, C, T] tensor",
    "lstm": "use temporal Conv2d (1xk) blocks or the self-attention block",
    "gru": "use temporal Conv2d (1xk) blocks or the self-attention block",
}
# TFLite opcodes that the LiteRT interpreter cannot run -> the aten ops that lower to them
TFLITE_OPCODES = {
    "STABLEHLO_SORT": ("sort", "topk", "argsort"),
    "RFFT2D": ("_fft_r2c", "fft_rfft", "stft"),
}


def _layer(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "the model's forward()"
    path, kind = list(stack.values())[-1]
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    return f"layer '{path or '(top level)'}' ({kind.rsplit('.', 1)[-1]})"


def _graph_nodes(model: torch.nn.Module, example: torch.Tensor):
    try:
        return list(torch.export.export(model, (example,)).graph.nodes)
    except Exception:
        return []


def _op_name(target) -> str:
    name = getattr(target, "__name__", str(target))  # e.g. "median.dim"
    return name.split(".")[0]


def explain_failure(error: BaseException, model: torch.nn.Module, example: torch.Tensor, fmt: str) -> UserError:
    """A UserError naming the unsupported op and its layer, or the converter's first line when none is found."""
    message = str(error)
    first = next((line.strip() for line in message.splitlines() if line.strip()), type(error).__name__)
    candidates = [m for m in re.findall(r"aten[.:]+(\w+)", message) if m not in ("default",)]
    for opcode, ops in TFLITE_OPCODES.items():
        if opcode in message:
            candidates += list(ops)
    if not candidates:
        return UserError(f"{fmt} export failed: {first[:300]}")
    nodes = [n for n in _graph_nodes(model, example) if n.op == "call_function"]
    named = re.search(r"%(\w+) :", message)  # litert-torch names the FX node it was lowering
    for op in candidates:
        matches = [n for n in nodes if _op_name(n.target) == op]
        if named:
            matches = [n for n in matches if n.name == named.group(1)] or matches
        if matches or op in SUGGESTIONS:
            where = f" in {_layer(matches[0])}" if matches else ""
            hint = SUGGESTIONS.get(op, f"rewrite it with supported ops: {SUPPORTED}")
            return UserError(f"{fmt} export: op '{op}'{where} is not supported; {hint}")
    return UserError(f"{fmt} export failed: op '{candidates[0]}' is not supported ({first[:200]}); "
                     f"supported building blocks: {SUPPORTED}")
