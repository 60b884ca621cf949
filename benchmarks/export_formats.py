"""Every export format and precision of the default student, side by side in one process: file size, accuracy,
agreement with torch, and single-window latency (median, p99) with the same inputs and one thread each.

Also quantisation-aware training (`edgekit quantize --qat`) against post-training int8, and the int8 investigation:
ONNX int8 as QOperator vs QDQ and with other op sets, TFLite int8 with Conv2d alone in int8, TFLite with the
XNNPACK delegate on and off, and onnxruntime's per-op profile of fp32 vs int8.

    .venv/bin/python benchmarks/export_formats.py [--datasets BasicMotions,JapaneseVowels] [--reps 2000]

Writes results/export_formats.{json,md}. Latencies are measured in interleaved rounds so that a burst of load
on the machine hits every backend alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import write  # noqa: E402

VARIANTS = [  # name, format, precision, export options
    ("onnx fp32", "onnx", "fp32", {}),
    ("onnx int8", "onnx", "int8", {"quant_format": "qoperator"}),
    ("onnx int8 qdq", "onnx", "int8", {"quant_format": "qdq"}),
    ("tflite fp32", "tflite", "fp32", {}),
    ("tflite fp16", "tflite", "fp16", {}),
    ("tflite int8", "tflite", "int8", {}),
    ("tflite int8 int8-io", "tflite", "int8", {"int8_io": True}),
]
# the same int8 exports of the checkpoint fine-tuned by `edgekit quantize --qat`
QAT_VARIANTS = [("onnx int8 qat", "onnx", "int8", {}), ("tflite int8 qat", "tflite", "int8", {})]
QAT_EPOCHS = 30


def latencies(fns: dict, x: np.ndarray, reps: int, rounds: int = 10) -> dict:
    """Per name: single-window call times in µs, collected in `rounds` interleaved rounds."""
    times = {k: [] for k in fns}
    for f in fns.values():
        for _ in range(200):
            f(x)
    per_round = max(1, reps // rounds)
    for _ in range(rounds):
        for k, f in fns.items():
            for _ in range(per_round):
                t = time.perf_counter()
                f(x)
                times[k].append(time.perf_counter() - t)
    return {k: {"median_us": float(np.median(v) * 1e6), "p99_us": float(np.percentile(v, 99) * 1e6)}
            for k, v in times.items()}


def ort_profile(path: Path, x: np.ndarray, reps: int = 500) -> dict:
    """Kernel time per op type (µs per window) from onnxruntime's profiler, and the share spent outside kernels."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    for _ in range(reps):
        s.run(None, {name: x})
    events = json.loads(Path(s.end_profiling()).read_text())
    ops, runs = {}, []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            ops[op] = ops.get(op, 0.0) + e["dur"]
        elif e.get("cat") == "Session" and e["name"] == "model_run":
            runs.append(e["dur"])
    n = len(runs)
    kernels = sum(ops.values()) / n
    return {"run_us": float(np.median(runs)), "kernels_us": kernels,
            "nodes": sum(1 for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")) // n,
            "ops_us": {k: round(v / n, 2) for k, v in sorted(ops.items(), key=lambda kv: -kv[1])}}


def weight_bytes(path: Path) -> int:
    """Bytes of constant data (weights, biases, scales) in an exported file, without the graph around them."""
    if path.suffix == ".onnx":
        import onnx

        return sum(len(t.raw_data) for t in onnx.load(str(path)).graph.initializer)
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    return sum(len(b.data) for b in model.buffers if b.data is not None)


def ort_variant(model, windows, calibration, labels, ref, out: Path, quant_format: str, op_types):
    from edgekit_exporters.onnx_export import to_onnx
    from edgekit_exporters.onnx_quantize import quantize_onnx
    from edgekit_runtime.engine import OnnxModel

    quantize_onnx(to_onnx(model, windows), out, calibration, quant_format, op_types=op_types)
    m = OnnxModel(out)
    got = m.logits(windows)
    return m, {"bytes": out.stat().st_size, "weight_bytes": weight_bytes(out),
               "accuracy": float((got.argmax(1) == labels).mean()),
               "agreement": float((got.argmax(1) == ref.argmax(1)).mean())}


def tflite_int8_variant(model, windows, calibration, ops) -> bytes:
    from edgekit_exporters.tflite_export import quantize_tflite, to_tflite
    from edgekit_exporters.tflite_graph import finish_tflite

    return finish_tflite(quantize_tflite(to_tflite(model, torch.from_numpy(windows[:1])), calibration, ops))


def bench_dataset(name: str, work: Path, reps: int) -> tuple[list[dict], dict]:
    from edgekit.checkpoint import load_checkpoint
    from edgekit.settings import DataSettings
    from edgekit.data import load_spec
    from edgekit.export import export_checkpoint
    from edgekit.quantize import qat_checkpoint
    from edgekit.settings import ExportSettings
    from edgekit.data import split_from_spec
    from edgekit.train import train_student
    from edgekit_exporters import calibration_windows
    from edgekit_runtime.engine import LiteRTModel, open_model
    from edgekit_runtime.model_dir import load_bundle

    ckpt_dir = work / name / "checkpoint"
    if not ckpt_dir.exists():
        train_student(DataSettings(name).spec(), str(ckpt_dir), progress=False)
    qat_dirs = {fmt: work / name / f"qat-checkpoint-{fmt}" for _, fmt, _, _ in QAT_VARIANTS}  # QAT targets a format
    for fmt, qat_dir in qat_dirs.items():
        if not qat_dir.exists():
            qat_checkpoint(str(ckpt_dir), str(qat_dir), fmt, epochs=QAT_EPOCHS, progress=False)
    ckpt = load_checkpoint(ckpt_dir)
    train, _, test = split_from_spec(load_spec(ckpt.data), ckpt.data)
    x = ckpt.preprocessing.prepare_windows(test.values)
    with torch.no_grad():
        ref = ckpt.model(torch.from_numpy(x)).numpy()
    one = np.ascontiguousarray(x[:1])
    rows = [{"dataset": name, "backend": "torch eager", "bytes": None,
             "accuracy": float((ref.argmax(1) == test.labels).mean()), "agreement": 1.0}]
    runners = {"torch eager": lambda w: ckpt.model(torch.from_numpy(w))}
    models = {}
    for label, fmt, precision, opts in VARIANTS + QAT_VARIANTS:
        out = work / name / label.replace(" ", "-")
        source = qat_dirs[fmt] if label.endswith(" qat") else ckpt_dir
        m = export_checkpoint(str(source), str(out), ExportSettings(fmt, precision, **opts), overwrite=True)
        model = open_model(load_bundle(out).models[0])
        got = model.logits(x)  # compared with the original float model, QAT rows included
        rows.append({"dataset": name, "backend": label, "bytes": m["model"]["bytes"],
                     "weight_bytes": weight_bytes(out / m["model"]["file"]),
                     "accuracy": float((got.argmax(1) == test.labels).mean()),
                     "agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
                     "max_abs_diff": round(float(np.abs(got - ref).max()), 4)})
        runners[label] = model.logits
        models[label] = (out / m["model"]["file"], model)

    # the int8 investigation: variants that are not exported by default
    calib = calibration_windows(ckpt.preprocessing.prepare_windows(train.values), 256)
    extra = {}
    for label, qf, ops in (("onnx int8 qdq all ops", "qdq", None), ("onnx int8 qoperator all ops", "qoperator", None),
                           ("onnx int8 qoperator matmul only", "qoperator", ("MatMul", "Gemm"))):
        try:
            model, r = ort_variant(ckpt.model, x, calib, test.labels, ref,
                                   work / name / f"{label.replace(' ', '-')}.onnx", qf, ops)
        except Exception as e:  # a variant ORT cannot build is a finding, not a crash
            extra[label] = f"failed: {str(e).splitlines()[0][:120]}"
            continue
        rows.append({"dataset": name, "backend": label, **r})
        runners[label] = model.logits
    label = "tflite int8 conv only"  # Linear left float too
    path = work / name / "tflite-int8-conv-only.tflite"
    path.write_bytes(tflite_int8_variant(ckpt.model, x, calib, ("CONV_2D",)))
    model = LiteRTModel(path)
    got = np.concatenate([model.logits(x[i : i + 1]) for i in range(len(x))])
    rows.append({"dataset": name, "backend": label, "bytes": path.stat().st_size, "weight_bytes": weight_bytes(path),
                 "accuracy": float((got.argmax(1) == test.labels).mean()),
                 "agreement": float((got.argmax(1) == ref.argmax(1)).mean())})
    runners[label] = model.logits
    for label in ("tflite fp32", "tflite int8"):  # LiteRT's built-in kernels instead of XNNPACK
        rows.append({**next(r for r in rows if r["backend"] == label), "backend": f"{label} no xnnpack"})
        runners[f"{label} no xnnpack"] = LiteRTModel(models[label][0], xnnpack=False).logits

    torch.set_num_threads(1)
    with torch.no_grad():
        lat = latencies(runners, one, reps)
    for r in rows:
        r.update({k: round(v, 1) for k, v in lat[r["backend"]].items()})
        r["speedup_vs_torch"] = round(lat["torch eager"]["median_us"] / r["median_us"], 1)
    profile = {k: ort_profile(models[k][0], one) for k in ("onnx fp32", "onnx int8", "onnx int8 qdq")}
    return rows, {"profile": profile, "failed_variants": extra}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="BasicMotions,JapaneseVowels")
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--work", default="runs/bench-export", help="checkpoints and exports (reused when present)")
    args = ap.parse_args()
    rows, details = [], {}
    for name in args.datasets.split(","):
        r, d = bench_dataset(name, Path(args.work), args.reps)
        rows += r
        details[name] = d
    fp32 = {(r["dataset"], r["backend"].split()[0]): r for r in rows if r["backend"] in ("onnx fp32", "tflite fp32")}
    for r in rows:
        ref = fp32.get((r["dataset"], r["backend"].split()[0]))
        if r.get("bytes") and ref:  # against the same format's fp32 file
            r["size_vs_fp32"] = round(r["bytes"] / ref["bytes"], 2)
            r["weights_vs_fp32"] = round(r["weight_bytes"] / ref["weight_bytes"], 2)
    cols = ["dataset", "backend", "bytes", "size_vs_fp32", "weights_vs_fp32", "accuracy", "agreement", "max_abs_diff",
            "median_us", "p99_us", "speedup_vs_torch"]
    notes = "ONNX Runtime per-op kernel time, µs per window (1 thread):\n\n" + "\n".join(
        f"- {ds} {k}: run {p['run_us']:.0f} µs, kernels {p['kernels_us']:.0f} µs over {p['nodes']} nodes; "
        + ", ".join(f"{op} {t}" for op, t in list(p["ops_us"].items())[:8])
        for ds, d in details.items() for k, p in d["profile"].items())
    md = write("export_formats", "Export formats side by side (single window, one thread)", rows, cols,
               {"datasets": args.datasets.split(","), "reps": args.reps, "details": details}, notes)
    print(md)


if __name__ == "__main__":
    main()
