"""Inference backends: onnxruntime for .onnx files, LiteRT (ai-edge-litert, or tflite-runtime as a fallback)
for .tflite files. Each takes `[N, C, T]` float32 windows and returns logits `[N, K]`; one session per model,
created once and reused for every call.

BACKENDS lists them in order of preference; a format may have several, and a model runs on the first one
installed for its format. Which model of a bundle runs is chosen from what the bundle holds and what is
installed, in the manifest's order of preference, unless `backend`/`precision` say otherwise.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

PRECISIONS = ("fp32", "fp16", "int8")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Model:
    backend = ""

    def logits(self, windows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        return softmax(self.logits(windows).astype(np.float64))


class OnnxModel(Model):
    """An ONNX model run by onnxruntime on the CPU."""

    backend = "onnxruntime"

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

    def io(self) -> dict:
        desc = lambda args: [{"name": a.name, "shape": a.shape, "type": a.type} for a in args]  # noqa: E731
        return {"inputs": desc(self.session.get_inputs()), "outputs": desc(self.session.get_outputs())}


def _litert_interpreter():
    """The TFLite interpreter class: ai-edge-litert, else tflite-runtime; None when neither is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            return None
    return Interpreter


class LiteRTModel(Model):
    """A .tflite model run by the LiteRT interpreter. The batch dimension is resized on demand; inputs laid out
    `[N, C, 1, T]` or channels-last `[N, T, C]` / `[N, 1, T, C]` are fed by reshaping or transposing the
    `[N, C, T]` windows; int8/uint8 inputs and outputs are (de)quantised with the model's own scale and zero
    point.

    `xnnpack=False` runs LiteRT's built-in kernels instead of the XNNPACK delegate (for comparison: XNNPACK is
    2-3x faster on the students, float and int8, benchmarks/results/export_formats.md)."""

    backend = "litert"

    def __init__(self, path: str | Path, threads: int = 1, xnnpack: bool = True):
        Interpreter = _litert_interpreter()
        if Interpreter is None:
            raise UserError("running .tflite models needs ai-edge-litert (pip install 'edgekit-runtime[litert]')")
        options = {}
        resolver = getattr(sys.modules[Interpreter.__module__], "OpResolverType", None)
        if not xnnpack and resolver is not None:
            options["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads, **options)
            self.interpreter.allocate_tensors()
        except Exception as e:  # the interpreter raises ValueError/RuntimeError for unreadable models
            raise UserError(f"{path}: LiteRT cannot load this model ({str(e).splitlines()[0]})") from None
        self.path = path
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self._batch = int(self._in["shape"][0])

    def _layout(self, windows: np.ndarray) -> np.ndarray:
        n, c, t = windows.shape
        shape = tuple(int(d) for d in self._in["shape"][1:])
        if shape == (c, t):
            return windows
        if shape == (c, 1, t):
            return windows.reshape(n, c, 1, t)
        if shape == (t, c):
            return np.ascontiguousarray(windows.transpose(0, 2, 1))
        if shape == (1, t, c):
            return np.ascontiguousarray(windows.transpose(0, 2, 1)).reshape(n, 1, t, c)
        taken = [int(d) for d in self._in["shape"]]
        raise UserError(f"{self.path}: input: the model takes {taken}, which does not fit windows [N, {c}, {t}]")

    def logits(self, windows: np.ndarray) -> np.ndarray:
        fixed = self._in.get("shape_signature", self._in["shape"])[0] > 0  # litert-torch exports batch 1
        if fixed and len(windows) != self._batch:
            return np.concatenate([self.logits(windows[i : i + self._batch])
                                   for i in range(0, len(windows), self._batch)])
        x = self._layout(windows)
        if len(x) != self._batch:
            self.interpreter.resize_tensor_input(self._in["index"], [len(x), *x.shape[1:]])
            self.interpreter.allocate_tensors()
            self._in = self.interpreter.get_input_details()[0]
            self._out = self.interpreter.get_output_details()[0]
            self._batch = len(x)
        dtype = self._in["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero = self._in["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        else:
            x = x.astype(dtype, copy=False)
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._out["index"])
        if np.issubdtype(y.dtype, np.integer):
            scale, zero = self._out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y.reshape(len(windows), -1)

    def io(self) -> dict:
        desc = lambda ds: [{"name": d["name"], "shape": [int(v) for v in d["shape"]],  # noqa: E731
                            "type": np.dtype(d["dtype"]).name} for d in ds]
        return {"inputs": desc(self.interpreter.get_input_details()),
                "outputs": desc(self.interpreter.get_output_details())}


@dataclass(frozen=True)
class Backend:
    name: str  # what --backend takes and `edgekit info` reports
    format: str  # the model format it runs (model_dir.MODEL_FORMATS)
    modules: tuple[str, ...]  # importable modules, any of which means it is installed
    loader: type[Model]  # called as loader(path, threads=...)
    pip: str | None = None  # how to install it, for the error when it is missing
    distributions: tuple[str, ...] = ()  # pip distributions that provide it (their versions go into bench reports)

    def installed(self) -> bool:
        return any(importlib.util.find_spec(m) is not None for m in self.modules)


# in order of preference: for each format, the first installed backend runs its models
BACKENDS = (
    Backend("onnxruntime", "onnx", ("onnxruntime",), OnnxModel, distributions=("onnxruntime",)),
    Backend("litert", "tflite", ("ai_edge_litert", "tflite_runtime"), LiteRTModel,
            "pip install 'edgekit-runtime[litert]'", ("ai-edge-litert", "tflite-runtime")),
)


def installed_backends() -> list[str]:
    return [b.name for b in BACKENDS if b.installed()]


def _backends(fmt: str, name: str | None = None) -> list[Backend]:
    return [b for b in BACKENDS if b.format == fmt and name in (None, b.name)]


def backend_for(fmt: str, name: str | None = None) -> Backend | None:
    """The installed backend that runs `fmt` models (the backend called `name`, else the first in order of
    preference), or None."""
    installed = installed_backends()
    return next((b for b in _backends(fmt, name) if b.name in installed), None)


def backend_names(fmt: str) -> str:
    """The backends that can run `fmt` models, for messages ("onnxruntime", "a or b")."""
    return " or ".join(b.name for b in _backends(fmt))


def choose_models(bundle, backend: str | None = None, precision: str | None = None) -> list:
    """The bundle's models that can run here, filtered by backend/precision, in order of preference."""
    formats = {b.format for b in BACKENDS if backend in (None, b.name)}
    candidates = [m for m in bundle.models
                  if m.format in formats and (precision is None or m.precision == precision)]
    if not candidates:
        have = ", ".join(f"{m.name} ({backend_names(m.format)}, {m.precision})" for m in bundle.models)
        want = " ".join(x for x in (backend, precision) if x)
        raise UserError(f"{bundle.path}: no {want} model in the bundle; it holds {have}")
    runnable = [m for m in candidates if backend_for(m.format, backend) is not None]
    if not runnable:
        missing = [b for m in candidates for b in _backends(m.format, backend)]
        hint = "; ".join(sorted({b.pip for b in missing if b.pip}))
        raise UserError(f"{bundle.path}: its models need {', '.join(sorted({b.name for b in missing}))}, which is "
                        f"not installed{f' ({hint})' if hint else ''}")
    return runnable


def open_model(model_file, threads: int = 1, backend: str | None = None) -> Model:
    """Load a model on `backend`, by default on the first installed backend for its format."""
    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    options = _backends(model_file.format, backend)
    if not options:
        raise UserError(f"{model_file.name}: the {backend} backend does not run {model_file.format} models")
    # with none installed, the preferred backend's loader fails with what to install
    chosen = backend_for(model_file.format, backend) or options[0]
    return chosen.loader(model_file.path, threads=threads)


def check_model(model: Model, channels: int, window: int, n_classes: int, where: str) -> None:
    """The model must take `[N, channels, window]` windows and give one finite score per class: checked on two
    zero windows before a bundle is used, so a mismatched or broken model is refused in one line instead of
    failing (or misleading) mid-run."""
    try:
        y = np.asarray(model.logits(np.zeros((2, channels, window), np.float32)))
    except UserError:
        raise
    except Exception as e:  # the backends raise their own types for inputs a model does not take
        raise UserError(f"{where}: input: the model does not take windows [N, {channels}, {window}] "
                        f"({(str(e).strip().splitlines() or [type(e).__name__])[0][:200]})") from None
    if y.ndim != 2 or y.shape[0] != 2:
        raise UserError(f"{where}: output: expected [N, {n_classes}] class scores, got shape {list(y.shape)}")
    if y.shape[1] != n_classes:
        raise UserError(f"{where}: output: the model gives {y.shape[1]} class scores, the bundle lists "
                        f"{n_classes} classes")
    if not np.isfinite(y).all():
        raise UserError(f"{where}: output: the model gives non-finite scores for a zero window")
