"""The accuracy suite: the default ~10k-parameter student (fp32 and int8) against MiniRocket, on real datasets.

For each dataset and seed, on the benchmark's own train/test split, with edgekit's defaults and no tuning flags:
`edgekit train` (the default recipe: validation estimate, then a refit on training + validation windows), the
int8 exports as `edgekit export --precision int8` makes them (ONNX and TFLite; post-training quantisation, QAT
when that is refused), and aeon's MiniRocket fitted on the same training windows in the same run. Reported per
dataset (mean ± sd over seeds): test accuracy of each, int8 refusals, parameters, MACs, single-window latency
(one thread: the student through the runtime's onnxruntime backend, MiniRocket through aeon's predict) and the
student's training wall time.

    python benchmarks/accuracy_suite.py [--datasets BasicMotions,JapaneseVowels,ACSF1,GunPoint,PLAID] [--seeds 3]
                                        [--jobs 2] [--outside]

`--outside` (results/accuracy_outside.md) runs the same comparison on the classification datasets that aeon ships
and edgekit does not bundle, through the CSV path a user has: each written as `train.csv` and `test.csv` and trained
as `edgekit train DIR --window L --label-column label --split group --test-groups test.csv`. The training recipe's
ablations (training_recipe.py) looked at ArrowHead, OSULeaf, ItalyPowerDemand and UnitTest; Covid3Month_disc was
never looked at before this table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import dataset_spec, median_latency_ms, torch_threads_kept  # noqa: E402

DATASETS = "BasicMotions,JapaneseVowels,ACSF1,GunPoint,PLAID"
# equal-length classification datasets in aeon's own data folder that edgekit does not bundle
OUTSIDE = "ArrowHead,OSULeaf,ItalyPowerDemand,UnitTest,Covid3Month_disc"


def run_one(name: str, seed: int, work: str) -> dict:
    """Train, quantise and compare one dataset and seed (in a worker process, one thread)."""
    import torch

    torch.set_num_threads(1)
    from aeon.classification.convolution_based import MiniRocketClassifier

    from edgekit.checkpoint import load_checkpoint
    from edgekit.export import export_checkpoint
    from edgekit.quantize import quantize_checkpoint
    from edgekit.data import labelled_splits
    from edgekit.settings import ExportSettings
    from edgekit.train import train_student
    from edgekit.train_settings import TrainSettings
    from edgekit_exporters import ExportMismatch
    from edgekit_runtime.engine import OnnxModel

    root = Path(work) / f"{name}-{seed}"
    spec, split = dataset_spec(name, root)
    summary = train_student(spec, str(root / "ckpt"), split=split, settings=TrainSettings(seed=seed), progress=False)
    m = summary["metrics"]
    row = {"dataset": name, "seed": seed, "student_fp32": m["test_accuracy"], "val_accuracy": m.get("val_accuracy"),
           "parameters": summary["parameters"], "macs": summary["macs"], "train_s": m["train_seconds"],
           "kernel": summary["model"]["kernel"], "scales": summary["model"]["scales"],
           "width": summary["model"]["width"]}
    fp32 = export_checkpoint(str(root / "ckpt"), str(root / "onnx"))
    for fmt in ("onnx", "tflite"):
        try:
            q = quantize_checkpoint(str(root / "ckpt"), str(root / f"{fmt}-int8"), ExportSettings(fmt),
                                    progress=False)
        except ExportMismatch:  # refused even after QAT: no int8 model for the user
            row.update({f"{fmt}_int8": None, f"{fmt}_int8_agreement": None, f"{fmt}_int8_method": "refused"})
            continue
        v = q["verification"]
        row[f"{fmt}_int8"] = v["accuracy_exported"]
        row[f"{fmt}_int8_agreement"] = v["argmax_agreement"]
        row[f"{fmt}_int8_method"] = q["quantization"]["method"]
    pre = load_checkpoint(root / "ckpt").preprocessing
    _, _, tr, va, te = labelled_splits(spec, split, seed)
    one = pre.prepare_windows(te.values[:1])
    for label, path in (("fp32", root / "onnx" / fp32["model"]["file"]),
                        ("int8", root / "onnx-int8" / "model-int8.onnx")):
        if path.exists():
            model = OnnxModel(path, threads=1)
            row[f"latency_{label}_ms"] = median_latency_ms(lambda: model.logits(one))

    x_train, y_train = np.concatenate([tr.values, va.values]), np.concatenate([tr.labels, va.labels])
    with torch_threads_kept():
        t0 = time.perf_counter()
        mr = MiniRocketClassifier(random_state=seed, n_jobs=1).fit(x_train, y_train)
        row["minirocket_train_s"] = time.perf_counter() - t0
        row["minirocket"] = float((mr.predict(te.values) == te.labels).mean())
        row["latency_minirocket_ms"] = median_latency_ms(lambda: mr.predict(te.values[:1]), 20)
    return row


def summarise(rows: list[dict]) -> list[dict]:
    def ms(values):
        v = np.array([x for x in values if x is not None], float)
        missing = len(values) - len(v)
        return (f"{v.mean():.3f} ± {v.std():.3f}" if len(v) else "-") + (f" ({missing} refused)" if missing else "")

    out = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        refusals = sum((r["onnx_int8_method"] != "ptq") + (r["tflite_int8_method"] != "ptq") for r in rs)

        def latency(key):
            values = [r[key] for r in rs if key in r]
            return round(float(np.median(values)), 4) if values else None

        out.append({
            "dataset": name, "seeds": len(rs),
            "student_fp32": ms([r["student_fp32"] for r in rs]),
            "onnx_int8": ms([r["onnx_int8"] for r in rs]), "tflite_int8": ms([r["tflite_int8"] for r in rs]),
            "minirocket": ms([r["minirocket"] for r in rs]),
            "gap": f"{np.mean([r['student_fp32'] - r['minirocket'] for r in rs]):+.3f}",
            "ptq_refused": refusals, "parameters": rs[0]["parameters"], "macs": rs[0]["macs"],
            "student_ms": latency("latency_fp32_ms"), "int8_ms": latency("latency_int8_ms"),
            "minirocket_ms": round(float(np.median([r["latency_minirocket_ms"] for r in rs])), 3),
            "train_s": round(float(np.max([r["train_s"] for r in rs])), 1),
        })
    means = {k: float(np.mean([np.mean([r[k] if r[k] is not None else 0.0 for r in rows
                                        if r["dataset"] == d["dataset"]])
                               for d in out]))  # a refused int8 export counts as 0: the user has no model
             for k in ("student_fp32", "onnx_int8", "tflite_int8", "minirocket")}
    out.append({"dataset": "mean", "seeds": "", **{k: f"{v:.3f}" for k, v in means.items()},
                "gap": f"{means['student_fp32'] - means['minirocket']:+.3f}",
                "ptq_refused": sum(d["ptq_refused"] for d in out)})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", help=f"Default: {DATASETS} (with --outside: {OUTSIDE}).")
    ap.add_argument("--outside", action="store_true", help="Datasets outside the suite, through the CSV path; "
                                                           "results in accuracy_outside.md/json.")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2, help="Dataset × seed runs in parallel (one thread each).")
    ap.add_argument("--update", action="store_true", help="Keep the committed rows of the datasets not in --datasets "
                                                          "(rerun some datasets after a change that only they see).")
    args = ap.parse_args()
    from results import RESULTS, write

    args.datasets = args.datasets or (OUTSIDE if args.outside else DATASETS)
    names = args.datasets.split(",")
    results = "accuracy_outside" if args.outside else "accuracy_suite"
    title = ("Outside the suite (UCR datasets through the CSV path)" if args.outside else "Accuracy suite") + \
        ": default 10k student (fp32, int8) vs MiniRocket, same split, same run (test accuracy, mean ± sd over seeds)"
    jobs = [(name, seed) for name in names for seed in range(args.seeds)]
    rows = []
    if args.update and (RESULTS / f"{results}.json").exists():
        kept = json.loads((RESULTS / f"{results}.json").read_text())["meta"]["per_seed"]
        rows = [r for r in kept if r["dataset"] not in names]
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, name, seed, tmp) for name, seed in jobs]
        for f in futures:
            rows.append(f.result())
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
            summary = summarise(rows)
            md = write(results, title, summary,
                       ["dataset", "seeds", "student_fp32", "onnx_int8", "tflite_int8", "minirocket", "gap",
                        "ptq_refused", "parameters", "macs", "student_ms", "int8_ms", "minirocket_ms", "train_s"],
                       vars(args) | {"datasets": ",".join(dict.fromkeys(r["dataset"] for r in rows)),
                                     "per_seed": rows},
                       notes="Every run uses edgekit's defaults (no tuning flags). gap: student fp32 minus MiniRocket. "
                             "ptq_refused: int8 exports (ONNX + TFLite, all seeds) whose post-training quantisation "
                             "was refused by verification and redone by QAT (a refusal after QAT too is marked in the "
                             "accuracy column and counts as 0 in the mean). Latency: one window, one thread, median; "
                             "student through onnxruntime (fp32 and int8 ONNX), MiniRocket through aeon's predict; "
                             f"{args.jobs} runs shared the machine's cores. train_s: the slowest seed's "
                             "`edgekit train` wall time (both fits).")
    print(md)


if __name__ == "__main__":
    main()
