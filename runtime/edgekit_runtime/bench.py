"""`edgekit bench`: how a bundle performs on the machine it runs on.

Measures cold start (process start to first prediction, with and without a numba cache), preprocessing time
per window (numba kernels against the plain-numpy reference, and their agreement), inference latency per window
and windows per second for every model of the bundle that runs here, peak RSS, file sizes, accuracy on the
bundle's evaluation windows, and the hardware. `compare` sets a run against an earlier one.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version

import click
import numpy as np

from . import __version__, reference
from .coldstart import peak_rss_bytes
from .engine import BACKENDS, backend_for, check_model, open_model
from .errors import UserError
from .model_dir import load_bundle
from .signing import trusted_keys
from .stream import Chunk, StreamPreprocessor

BATCH_SIZES = (1, 8, 32, 128)
QUICK_BATCH_SIZES = (1, 32)
NOT_A_RESULT = "not an `edgekit bench --json` result"
# name, direction (+1: higher is better), absolute tolerance before a relative change counts
COMPARED = {
    "cold_start_s": -1, "preprocess_numba_ms": -1, "latency_median_ms": -1, "latency_p99_ms": -1,
    "windows_per_second_batch_1": 1, "windows_per_second_best": 1, "accuracy": 1,
}


def _timed(fn, repeats: int) -> np.ndarray:
    out = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out


def _stats_ms(s: np.ndarray) -> dict:
    ms = s * 1e3
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99))}


def hardware() -> dict:
    import numba

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
                "edgekit_runtime": __version__}
    for dist in (d for b in BACKENDS for d in b.distributions):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "arch": platform.machine(), "os": platform.platform(),
            "versions": versions}


def cold_start(bundle_path: str, model_name: str, cache_dir: str, trust_paths=()) -> dict:
    """Wall time from starting a fresh interpreter to its first prediction (signature check included when keys
    are trusted), and that process's peak RSS."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "edgekit_runtime.coldstart", bundle_path, model_name, *trust_paths],
                       capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [""])[-1]
        # the child dies of a UserError about the bundle (an unloadable model, say) as a traceback: its message is
        # the one line `edgekit run` would give for the same bundle, so pass it on as ours
        user_error = re.match(r"(?:edgekit_runtime\.errors\.)?UserError: (.*)", last)
        if user_error:
            raise UserError(user_error[1])
        raise RuntimeError(f"cold-start process failed: {last}")
    child = json.loads(r.stdout.strip().splitlines()[-1])
    return {"seconds": wall, "peak_rss_bytes": child["peak_rss_bytes"]}


def bench_preprocessing(pre, n_windows: int, seed: int = 0) -> dict:
    """Per window: one window's worth of raw samples through the streaming path (numba kernels when the model
    filters or resamples; the keys say "numba" for it) and the plain-numpy reference."""
    rng = np.random.default_rng(seed)
    n, c = pre.window, len(pre.channels)
    times = np.arange(n) / pre.sampling_rate
    values = rng.normal(size=(n, c)).astype(np.float32)

    def numba_path():
        return StreamPreprocessor(pre, stride=n).push(Chunk(times, values))[1]

    def numpy_path():
        return reference.process(pre, times, values, stride=n)

    diff = float(np.abs(numba_path() - numpy_path()).max())
    nb, ref = _timed(numba_path, n_windows), _timed(numpy_path, max(10, n_windows // 5))
    engine = "numba" if pre.filter is not None or pre.max_gap is not None else "numpy"
    return {"numba": _stats_ms(nb), "numpy": _stats_ms(ref), "engine": engine,
            "numpy_over_numba": float(np.median(ref) / np.median(nb)), "max_abs_diff": diff}


def bench_model(model_file, pre, n_windows: int, threads: int, batch_sizes, evals, n_classes: int) -> dict:
    model = open_model(model_file, threads=threads)
    check_model(model, len(pre.channels), pre.window, n_classes, str(model_file.path))
    rng = np.random.default_rng(0)
    one = pre.transform_windows(rng.normal(size=(1, len(pre.channels), pre.window)).astype(np.float32))
    for _ in range(20):
        model.logits(one)
    lat = _timed(lambda: model.logits(one), n_windows)
    throughput = {}
    for b in batch_sizes:
        xb = np.repeat(one, b, axis=0)
        model.logits(xb)
        throughput[b] = b / float(np.median(_timed(lambda: model.logits(xb), max(5, n_windows // b))))
    best = max(throughput, key=throughput.get)
    out = {"file": model_file.name, "format": model_file.format, "precision": model_file.precision,
           "backend": model.backend, "bytes": model_file.path.stat().st_size, "latency": _stats_ms(lat),
           "windows_per_second": {"batch_1": 1.0 / float(np.median(lat)), "best": throughput[best],
                                  "best_batch": int(best), "by_batch": {str(k): v for k, v in throughput.items()}}}
    if evals is not None:
        x = evals[0]
        pred = np.concatenate([model.logits(x[i : i + 32]).argmax(axis=1) for i in range(0, len(x), 32)])
        out["accuracy"] = float((pred == evals[1]).mean())
        out["accuracy_at_bundling"] = model_file.verification.get("eval_accuracy")
    return out


def run_bench(bundle_path, n_windows: int = 500, threads: int = 1, quick: bool = False,
              progress: bool = False, trust_paths=()) -> dict:
    b = load_bundle(bundle_path, trust=trusted_keys(trust_paths))
    pre = b.preprocessing
    runnable = [m for m in b.models if backend_for(m.format) is not None]
    evals = b.eval_inputs()
    if evals is not None and len(evals[1]) == 0:
        evals = None  # an eval.npz of 0 windows (which `edgekit verify` accepts) has no accuracy: as without one
    if quick:
        n_windows = min(n_windows, 100)
    steps = ["cold start", "preprocessing", *[m.name for m in runnable]]
    result = {"bundle": str(b.path), "threads": threads, "windows": n_windows, "quick": quick,
              "bundle_bytes": sum((b.root / n).stat().st_size for n in b.manifest["files"]),
              "input": {"channels": len(pre.channels), "window": pre.window, "sampling_rate": pre.sampling_rate},
              "skipped_models": [m.name for m in b.models if m not in runnable]}
    with click.progressbar(steps, label="bench", file=sys.stderr if progress else open(os.devnull, "w"),
                           item_show_func=lambda s: s or "") as bar:
        for step in bar:
            if step == "cold start" and runnable:
                with tempfile.TemporaryDirectory() as cache:
                    first = cold_start(str(b.path), runnable[0].name, cache, trust_paths)  # numba compiles
                    cached = cold_start(str(b.path), runnable[0].name, cache, trust_paths)
                result["cold_start"] = {"model": runnable[0].name, "no_cache_s": first["seconds"],
                                        "cached_s": cached["seconds"], "peak_rss_bytes": cached["peak_rss_bytes"]}
            elif step == "preprocessing":
                result["preprocess"] = bench_preprocessing(pre, n_windows)
            elif step != "cold start":
                m = next(m for m in runnable if m.name == step)
                result.setdefault("models", []).append(
                    bench_model(m, pre, n_windows, threads, QUICK_BATCH_SIZES if quick else BATCH_SIZES, evals,
                                len(b.classes)))
    result["peak_rss_bytes"] = peak_rss_bytes()
    result["hardware"] = hardware()
    return result


def flat_metrics(r: dict, where: str | None = None) -> dict:
    """The compared numbers, keyed by metric (and model file). With `where`, `r` is an earlier run read from that
    file, and anything in it that is not such a number (a missing key, a string, zero or less where a ratio is
    taken against it) is refused in one line naming the file and the key: a ratio against it would crash or lie."""

    def get(*path, zero_ok=False):
        name = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")  # models[0].accuracy
        v = r
        try:
            for k in path:
                v = v[k]
        except (KeyError, IndexError, TypeError):
            raise UserError(f"{where}: {name}: missing; {NOT_A_RESULT}") from None
        number = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if where is not None and not (number and (v > 0 or zero_ok and v == 0)):
            raise UserError(f"{where}: {name}: expected a {'non-negative' if zero_ok else 'positive'} number, "
                            f"got {json.dumps(v)[:40]}")
        return v

    out = {}
    if "cold_start" in r:
        out["cold_start_s"] = get("cold_start", "cached_s")
    out["preprocess_numba_ms"] = get("preprocess", "numba", "median_ms")
    models = r.get("models", [])
    if where is not None:
        # a run writes "models" unless no model ran here, and then names them in "skipped_models"
        if "models" not in r and not r.get("skipped_models"):
            raise UserError(f"{where}: models: missing, and no model skipped; {NOT_A_RESULT}")
        if not isinstance(models, list) or not all(isinstance(m, dict) and isinstance(m.get("file"), str)
                                                   for m in models):
            raise UserError(f"{where}: models: expected a list of results each naming its file; {NOT_A_RESULT}")
    for i, m in enumerate(models):
        key = m["file"]
        out[f"latency_median_ms {key}"] = get("models", i, "latency", "median_ms")
        out[f"latency_p99_ms {key}"] = get("models", i, "latency", "p99_ms")
        out[f"windows_per_second_batch_1 {key}"] = get("models", i, "windows_per_second", "batch_1")
        out[f"windows_per_second_best {key}"] = get("models", i, "windows_per_second", "best")
        if "accuracy" in m:
            out[f"accuracy {key}"] = get("models", i, "accuracy", zero_ok=True)  # compared by difference
    return out


def compare(new: dict, old: dict, threshold: float, where: str = "the old run") -> tuple[list[dict], list[str]]:
    """Ratios new/old for every metric in both runs; regressions are times more than `threshold` times the old
    value, throughputs below old / threshold, or any accuracy drop beyond 0.005. A p99 latency from a --quick run
    (the second-slowest of 100 calls) is shown but not held against the new run: it moves by half on a busy board.
    A metric the old run lacks (a model that did not run there) gets a row with old and ratio None, so that the
    comparison says what it left out. `old` is checked as flat_metrics(old, where) checks it."""
    rows, regressions = [], []
    quick = bool(new.get("quick") or old.get("quick"))
    a, b = flat_metrics(new), flat_metrics(old, where)
    for key in a:
        if key not in b:
            rows.append({"metric": key, "old": None, "new": a[key], "ratio": None, "regression": False})
            continue
        metric = key.split(" ")[0]
        ratio = a[key] / b[key] if b[key] else None  # only an accuracy can be 0
        if metric == "accuracy":
            worse = b[key] - a[key] > 0.005
        elif COMPARED[metric] > 0:
            worse = ratio < 1 / threshold
        else:
            worse = ratio > threshold and not (quick and metric == "latency_p99_ms")
        rows.append({"metric": key, "old": b[key], "new": a[key], "ratio": ratio, "regression": worse})
        if worse:
            regressions.append(key)
    return rows, regressions


def format_table(r: dict, comparison: list[dict] | None = None) -> str:
    h = r["hardware"]
    lines = [f"hardware   {h['cpu']}, {h['cores']} cores, {h['arch']}, {h['os']}",
             f"bundle     {r['bundle']} ({r['bundle_bytes'] / 1024:.1f} KiB), input [C={r['input']['channels']}, "
             f"T={r['input']['window']}], {r['threads']} thread(s), {r['windows']} windows"]
    if "cold_start" in r:
        cs = r["cold_start"]
        lines.append(f"cold start {cs['cached_s']:.2f} s to first prediction with a warm numba cache, "
                     f"{cs['no_cache_s']:.2f} s with an empty one; "
                     f"peak RSS {cs['peak_rss_bytes'] / 2**20:.0f} MiB ({cs['model']})")
    p = r["preprocess"]
    lines.append(f"preprocess {p['numba']['median_ms'] * 1e3:.1f} µs/window streaming ({p.get('engine', 'numba')}), "
                 f"{p['numpy']['median_ms'] * 1e3:.1f} µs numpy reference ({p['numpy_over_numba']:.1f}x); "
                 f"max |diff| {p['max_abs_diff']:.1e}")
    lines.append(f"{'model':<22}{'backend':<13}{'KiB':>7}{'median ms':>11}{'p90 ms':>9}{'p99 ms':>9}"
                 f"{'win/s b1':>10}{'win/s best':>16}{'accuracy':>10}")
    for m in r.get("models", []):
        w, lat = m["windows_per_second"], m["latency"]
        acc = f"{m['accuracy']:.3f}" if "accuracy" in m else "-"
        lines.append(f"{m['file']:<22}{m['backend']:<13}{m['bytes'] / 1024:>7.1f}{lat['median_ms']:>11.4f}"
                     f"{lat['p90_ms']:>9.4f}{lat['p99_ms']:>9.4f}{w['batch_1']:>10.0f}"
                     f"{w['best']:>10.0f} (b{w['best_batch']}){acc:>10}")
    for name in r["skipped_models"]:
        lines.append(f"{name:<22}not run: its backend is not installed")
    lines.append(f"peak RSS   {r['peak_rss_bytes'] / 2**20:.0f} MiB (this bench process)")
    if comparison:
        lines.append(f"{'compared with old run':<48}{'old':>12}{'new':>12}{'new/old':>9}")
        for c in comparison:
            flag = "  REGRESSION" if c["regression"] else "  not in the old run" if c["old"] is None else ""
            old = "-" if c["old"] is None else f"{c['old']:.4g}"
            ratio = "-" if c["ratio"] is None else f"{c['ratio']:.2f}"
            lines.append(f"{c['metric']:<48}{old:>12}{c['new']:>12.4g}{ratio:>9}{flag}")
    return "\n".join(lines)
