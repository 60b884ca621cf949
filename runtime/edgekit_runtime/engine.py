"""Inference backends. One session per model, created once and reused for every window."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UserError


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class OnnxModel:
    """An ONNX model run by onnxruntime on the CPU; input `[N, C, T]` float32, output logits `[N, K]`."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for unreadable or invalid models
            raise UserError(f"{path}: onnxruntime cannot load this model ({str(e).splitlines()[0]})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = inp.shape
        self.output_name = self.session.get_outputs()[0].name

    def logits(self, windows: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: windows})[0]

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        return softmax(self.logits(windows).astype(np.float64))
