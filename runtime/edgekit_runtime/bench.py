"""`edgekit bench`: latency and throughput of a model directory on the machine it runs on."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from . import __version__
from .engine import choose_models, open_model
from .model_dir import load_bundle

BATCH_SIZES = (1, 8, 32, 128)


def _timed(fn, repeats: int) -> np.ndarray:
    out = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out


def _hardware() -> dict:
    import numba
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "onnxruntime": onnxruntime.__version__,
        "edgekit_runtime": __version__,
    }


def run_bench(model_dir, n_windows: int = 500, threads: int = 1, seed: int = 0) -> dict:
    """Time preprocessing and inference on random windows shaped like the model's input (values do not change
    the work a CNN does, so random inputs measure what real ones would)."""
    md = load_bundle(model_dir)
    pre = md.preprocessing
    model = open_model(choose_models(md)[0], threads=threads)
    rng = np.random.default_rng(seed)
    one = rng.standard_normal((1, len(pre.channels), pre.window)).astype(np.float32)
    x = pre.transform_windows(one)  # also compiles/loads the numba kernel before timing
    for _ in range(20):
        model.logits(x)

    pre_s = _timed(lambda: pre.transform_windows(one), n_windows)
    inf_s = _timed(lambda: model.logits(x), n_windows)
    e2e_s = _timed(lambda: model.predict_proba(pre.transform_windows(one)), n_windows)

    throughput = {}
    for b in BATCH_SIZES:
        xb = pre.transform_windows(np.repeat(one, b, axis=0))
        reps = max(5, n_windows // b)
        model.logits(xb)
        throughput[str(b)] = round(b / float(np.median(_timed(lambda: model.logits(xb), reps))), 1)
    best = max(throughput, key=throughput.get)

    def stats(s):
        ms = s * 1e3
        return {"median_ms": round(float(np.median(ms)), 4), "p90_ms": round(float(np.percentile(ms, 90)), 4),
                "p99_ms": round(float(np.percentile(ms, 99)), 4)}

    return {
        "model_dir": str(md.path),
        "model_file": md.model_file.name,
        "model_bytes": md.model_file.stat().st_size,
        "input": [len(pre.channels), pre.window],
        "threads": threads,
        "windows": n_windows,
        "preprocess": stats(pre_s),
        "inference": stats(inf_s),
        "end_to_end": stats(e2e_s),
        "windows_per_second": {"batch_1": round(1.0 / float(np.median(inf_s)), 1),
                               "best": {"batch": int(best), "windows_per_second": throughput[best]},
                               "by_batch": throughput},
        "hardware": _hardware(),
    }


def format_table(r: dict) -> str:
    lines = [
        f"model      {r['model_file']} ({r['model_bytes'] / 1024:.1f} KiB), input [C={r['input'][0]}, T={r['input'][1]}], "
        f"{r['threads']} thread(s), {r['windows']} windows",
        f"{'stage':<12}{'median ms':>12}{'p90 ms':>12}{'p99 ms':>12}",
    ]
    for key in ("preprocess", "inference", "end_to_end"):
        s = r[key]
        lines.append(f"{key:<12}{s['median_ms']:>12.4f}{s['p90_ms']:>12.4f}{s['p99_ms']:>12.4f}")
    w = r["windows_per_second"]
    lines.append(f"windows/s  {w['batch_1']:.0f} at batch 1, {w['best']['windows_per_second']:.0f} at batch "
                 f"{w['best']['batch']} (best)")
    h = r["hardware"]
    lines.append(f"hardware   {h['cpu']}, {h['cores']} cores, {h['arch']}, onnxruntime {h['onnxruntime']}")
    return "\n".join(lines)
