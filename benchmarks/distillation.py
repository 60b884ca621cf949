"""Teacher vs distilled student vs student alone vs MiniRocket, on real bundled datasets, several seeds.

For each dataset and seed, on the benchmark's own train/test split: the general teacher that ships with edgekit is
fine-tuned on the training labels (its defaults); a ~10k-parameter MSA-CNN is distilled from it (its defaults);
the same student is trained on labels alone (`edgekit train`'s defaults); aeon's MiniRocket is fitted on the same
training windows. Reported: test
accuracy, macro-F1, parameters, model file size and single-window CPU latency (one thread).

    python benchmarks/distillation.py [--datasets BasicMotions,JapaneseVowels,ACSF1,GunPoint,PLAID] [--seeds 3]

Daphnet S06R02E0 is not in the default list: the excerpt aeon ships has no freeze-of-gait episode, so all of its
windows carry one class and there is nothing to classify.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import median_latency_ms  # noqa: E402


def run_dataset(name: str, seed: int, args, tmp: Path) -> list[dict]:
    import torch
    from aeon.classification.convolution_based import MiniRocketClassifier

    from edgekit.checkpoint import load_checkpoint
    from edgekit.cli import _data_spec
    from edgekit.distill import distill
    from edgekit.export import export_checkpoint
    from edgekit.teacher.data import prepare
    from edgekit.teacher.finetune import finetune
    from edgekit.teacher.store import load_teacher
    from edgekit.train import classification_metrics, labelled_splits, train_student
    from edgekit.train_settings import FINETUNE, TrainSettings
    from edgekit_runtime.engine import OnnxModel

    spec = _data_spec(name, None, None, None, None, None, None)
    ds, split_spec, tr, va, te = labelled_splits(spec, None, None, 0.2, 0.2, seed)
    run = tmp / f"{name}-{seed}"
    began = time.perf_counter()
    t = finetune(spec, str(run / "teacher"), pretrained="general", settings=replace(FINETUNE, seed=seed),
                 progress=False)
    t_seconds = time.perf_counter() - began
    d = distill(str(run / "teacher"), str(run / "distilled"), params=args.params,
                train_settings=TrainSettings(seed=seed), progress=False)
    a = train_student(spec, str(run / "alone"), params=args.params, settings=TrainSettings(seed=seed),
                      progress=False)

    rows = []
    teacher = load_teacher(run / "teacher")
    one = prepare(te.subset([0]), teacher.preprocessing, teacher.model.cfg.patch)
    with torch.no_grad():
        torch.set_num_threads(1)
        lat = median_latency_ms(lambda: teacher.model.classify(one.values, one.times, one.observed), 20)
    rows.append({"model": "teacher (general, fine-tuned)", "accuracy": t["test_accuracy"],
                 "macro_f1": t["test_macro_f1"], "parameters": t["parameters"],
                 "file_kib": (run / "teacher" / "model.pt").stat().st_size / 1024, "latency_ms": lat,
                 "finetune_seconds": round(t_seconds)})
    for label, ckpt_dir, metrics in (("student distilled", run / "distilled", d["student"]),
                                     ("student alone", run / "alone", {"test_accuracy": a["metrics"]["test_accuracy"],
                                                                        "test_macro_f1": a["metrics"]["test_macro_f1"],
                                                                        "parameters": a["parameters"]})):
        export_checkpoint(str(ckpt_dir), str(ckpt_dir / "onnx"))
        onnx = OnnxModel(ckpt_dir / "onnx" / "model.onnx", threads=1)
        x = load_checkpoint(ckpt_dir).preprocessing.prepare_windows(te.values[:1])
        rows.append({"model": label, "accuracy": metrics["test_accuracy"], "macro_f1": metrics["test_macro_f1"],
                     "parameters": metrics["parameters"],
                     "file_kib": (ckpt_dir / "onnx" / "model.onnx").stat().st_size / 1024,
                     "latency_ms": median_latency_ms(lambda: onnx.logits(x))})
    train_x = np.concatenate([tr.values, va.values])
    train_y = np.concatenate([tr.labels, va.labels])
    mr = MiniRocketClassifier(random_state=seed, n_jobs=1).fit(train_x, train_y)
    pred = mr.predict(te.values)
    m = classification_metrics(te.labels, np.eye(len(ds.class_names))[pred.astype(int)])
    # MiniRocket's fitted parameters: the ridge classifier's weights and biases on its features
    ridge = mr.pipeline_.steps[-1][1] if hasattr(mr, "pipeline_") else None
    n_params = int(ridge.coef_.size + ridge.intercept_.size) if ridge is not None and hasattr(ridge, "coef_") else None
    rows.append({"model": "MiniRocket (aeon)", "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                 "parameters": n_params, "file_kib": len(pickle.dumps(mr)) / 1024,
                 "latency_ms": median_latency_ms(lambda: mr.predict(te.values[:1]), 20)})
    for r in rows:
        r.update(dataset=name, seed=seed)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="BasicMotions,JapaneseVowels,ACSF1,GunPoint,PLAID")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--params", default="10k")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.split(","):
            for seed in range(args.seeds):
                new = run_dataset(name, seed, args, Path(tmp))
                rows += new
                for r in new:
                    print(r, flush=True)
            report(rows, args)  # after every dataset, so a long run leaves results as it goes


def report(rows: list[dict], args) -> None:
    from results import write

    summary = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        for model in dict.fromkeys(r["model"] for r in rows if r["dataset"] == name):
            rs = [r for r in rows if r["dataset"] == name and r["model"] == model]
            acc, f1 = np.array([r["accuracy"] for r in rs]), np.array([r["macro_f1"] for r in rs])
            summary.append({"dataset": name, "model": model, "seeds": len(rs),
                            "accuracy": f"{acc.mean():.3f} ± {acc.std():.3f}", "macro_f1": f"{f1.mean():.3f} ± {f1.std():.3f}",
                            "parameters": rs[0]["parameters"], "file_kib": rs[0]["file_kib"],
                            "latency_ms": float(np.median([r["latency_ms"] for r in rs]))})
    print(write("distillation", "Teacher, distilled student, student alone and MiniRocket (test split, mean ± sd "
                "over seeds)", summary, ["dataset", "model", "seeds", "accuracy", "macro_f1", "parameters",
                                         "file_kib", "latency_ms"],
                vars(args) | {"per_seed": rows},
                notes="Latency: one window, one thread, median; teacher in torch eager, students through "
                      "onnxruntime (fp32), MiniRocket through aeon's predict. Parameters of MiniRocket: its ridge "
                      "classifier's weights (the random kernels are not learned)."))


if __name__ == "__main__":
    main()
