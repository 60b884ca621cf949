"""Teacher vs distilled student vs student alone vs MiniRocket, on real bundled datasets, several seeds.

For each dataset and seed, on the benchmark's own train/test split: the general teacher that ships with edgekit is
fine-tuned on the training labels (its defaults); a ~10k-parameter MSA-CNN is distilled from it (its defaults);
the same student is trained on the labels alone beside it (inside `edgekit distill`, which keeps the better of the
two); aeon's MiniRocket is fitted on the same labelled training windows. `--labels-per-class` measures the
label-scarce regime. Reported: test
accuracy, macro-F1, parameters, model file size and single-window CPU latency (one thread).

    python benchmarks/distillation.py [--datasets BasicMotions,JapaneseVowels,ACSF1,GunPoint,PLAID] [--seeds 3]
                                      [--first-seed 0] [--labels-per-class 10] [--merge] [--teachers DIR]

Daphnet S06R02E0 is not in the default list: the excerpt aeon ships has no freeze-of-gait episode, so all of its
windows carry one class and there is nothing to classify.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import median_latency_ms, torch_threads_kept  # noqa: E402


def run_dataset(name: str, seed: int, args, tmp: Path) -> list[dict]:
    import torch
    from aeon.classification.convolution_based import MiniRocketClassifier

    from edgekit.checkpoint import load_checkpoint
    from edgekit.settings import DataSettings, ExportSettings, FinetuneSettings, SplitSettings, TeacherSettings
    from edgekit.distill import distill
    from edgekit.quantize import export_verified
    from edgekit.teacher.data import prepare
    from edgekit.teacher.finetune import few_labels, finetune
    from edgekit.teacher.store import load_teacher
    from edgekit.data import labelled_splits
    from edgekit.training_loop import classification_metrics
    from edgekit.train_settings import FINETUNE, TrainSettings
    from edgekit_runtime.engine import OnnxModel
    from edgekit_runtime.errors import UserError

    spec = DataSettings(name).spec()
    few = args.labels_per_class
    val = 0.0 if few else 0.2  # label-scarce: no validation labels either, so no choice between the students
    ds, split_spec, tr, va, te = labelled_splits(spec, SplitSettings(val=val), seed)
    run = tmp / f"{name}-{seed}"
    saved = Path(args.teachers) / f"{name}-{seed}-{few or 'all'}" if args.teachers else None
    if saved and (saved / "teacher.json").is_file():  # fine-tuned by an earlier run: reused, its time not known
        shutil.copytree(saved, run / "teacher")
        t_seconds = None
    else:
        began = time.perf_counter()
        finetune(spec, str(run / "teacher"), TeacherSettings(pretrained="general"), FinetuneSettings(few),
                 SplitSettings(val=val), replace(FINETUNE, seed=seed), progress=False)
        t_seconds = round(time.perf_counter() - began)
        if saved:
            shutil.copytree(run / "teacher", saved)
    d = distill(str(run / "teacher"), str(run / "distilled"), params=args.params,
                train_settings=TrainSettings(seed=seed), progress=False)

    rows, t = [], d["teacher"]  # the teacher's test metrics, on the windows the students are measured on
    teacher = load_teacher(run / "teacher")
    one = prepare(te.subset([0]), teacher.preprocessing, teacher.model.cfg.patch)
    with torch.no_grad():
        torch.set_num_threads(1)
        lat = median_latency_ms(lambda: teacher.model.classify(one.values, one.times, one.observed), 20)
    rows.append({"model": "teacher (general, fine-tuned)", "accuracy": t["test_accuracy"],
                 "macro_f1": t["test_macro_f1"], "parameters": t["parameters"],
                 "file_kib": (run / "teacher" / "model.pt").stat().st_size / 1024, "latency_ms": lat,
                 "finetune_seconds": t_seconds})
    member = d["minirocket"]
    if member is not None:  # the teacher's soft labels with MiniRocket's mixed in
        rows.append({"model": "target (teacher + MiniRocket)", "kept": f"MiniRocket {member['weight']}",
                     "accuracy": member["target_test_accuracy"], "macro_f1": member["target_test_macro_f1"],
                     "minirocket_accuracy": member["test_accuracy"], "parameters": t["parameters"]})
    for kind in ("alone", "distilled"):  # first fits on the same windows, before the choice
        rows.append({"model": f"student {kind}", "accuracy": d[kind]["test_accuracy"],
                     "macro_f1": d[kind]["test_macro_f1"], "parameters": d["student"]["parameters"],
                     "teacher_agreement": d[kind]["teacher_agreement"]})
    ckpt_dir = run / "distilled"
    pre = load_checkpoint(ckpt_dir).preprocessing
    x = pre.prepare_windows(te.values[:1])

    def exported(folder: str, settings: ExportSettings = ExportSettings()):
        """The kept student exported as `edgekit export` makes it: (manifest, ONNX model, file KiB, latency ms)."""
        manifest = export_verified(str(ckpt_dir), str(ckpt_dir / folder), settings, progress=False)
        path = ckpt_dir / folder / manifest["model"]["file"]
        model = OnnxModel(path, threads=1)
        return manifest, model, path.stat().st_size / 1024, median_latency_ms(lambda: model.logits(x))

    _, _, kib, ms = exported("onnx")
    rows.append({"model": "student kept", "kept": d["kept"], "accuracy": d["student"]["test_accuracy"],
                 "macro_f1": d["student"]["test_macro_f1"], "parameters": d["student"]["parameters"],
                 "file_kib": kib, "latency_ms": ms})
    try:
        q, int8, kib, ms = exported("onnx-int8", ExportSettings(precision="int8"))
    except UserError as e:  # refused after the QAT fallback too: recorded, no accuracy to report
        print(f"{name} seed {seed}: int8 export refused: {e}", file=sys.stderr)
        rows.append({"model": "student kept, int8", "kept": "refused", "accuracy": None,
                     "parameters": d["student"]["parameters"]})
    else:
        m8 = classification_metrics(te.labels, int8.logits(pre.prepare_windows(te.values)))
        rows.append({"model": "student kept, int8", "kept": q["quantization"]["method"], "accuracy": m8["accuracy"],
                     "macro_f1": m8["macro_f1"], "parameters": d["student"]["parameters"], "file_kib": kib,
                     "latency_ms": ms})
    labelled = few_labels(tr, few, split_spec["seed"]) if few else tr
    train_x = np.concatenate([labelled.values, va.values])
    train_y = np.concatenate([labelled.labels, va.labels])
    with torch_threads_kept():
        mr = MiniRocketClassifier(random_state=seed, n_jobs=1).fit(train_x, train_y)
        pred = mr.predict(te.values)
        m = classification_metrics(te.labels, np.eye(len(ds.class_names))[pred.astype(int)])
        # MiniRocket's fitted parameters: the ridge classifier's weights and biases on its features
        ridge = mr.pipeline_.steps[-1][1] if hasattr(mr, "pipeline_") else None
        n_params = int(ridge.coef_.size + ridge.intercept_.size) if ridge is not None and hasattr(ridge, "coef_") \
            else None
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
    ap.add_argument("--first-seed", type=int, default=0, help="Run seeds first-seed .. seeds-1 only (with --merge: "
                    "add them to the seeds already in the results file).")
    ap.add_argument("--params", default="10k")
    ap.add_argument("--labels-per-class", type=int, help="The label-scarce regime: this many labelled training "
                    "windows per class, the rest of the training split unlabelled, no validation split.")
    ap.add_argument("--teachers", help="Keep the fine-tuned teachers in this folder and reuse those already there "
                    "(their fine-tuning time is then not reported).")
    ap.add_argument("--merge", action="store_true", help="Keep the per-seed rows of the datasets and seeds not run "
                    "this time from the existing results file (to run a long suite a few datasets at a time).")
    args = ap.parse_args()
    rows = previous_rows(args) if args.merge else []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.split(","):
            for seed in range(args.first_seed, args.seeds):
                new = run_dataset(name, seed, args, Path(tmp))
                rows += new
                for r in new:
                    print(r, flush=True)
                report(rows, args)  # after every seed, so a long run leaves results as it goes


def previous_rows(args) -> list[dict]:
    """The per-seed rows of the other datasets and seeds in this regime's existing results file."""
    import json

    from results import RESULTS

    path = RESULTS / f"{results_name(args)}.json"
    if not path.exists():
        return []
    ours = set(args.datasets.split(","))
    return [r for r in json.loads(path.read_text())["meta"]["per_seed"]
            if r["dataset"] not in ours or not args.first_seed <= r["seed"] < args.seeds]


def results_name(args) -> str:
    few = args.labels_per_class
    return f"distillation_{few}_labels" if few else "distillation"


def report(rows: list[dict], args) -> None:
    from results import write

    summary = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        for model in dict.fromkeys(r["model"] for r in rows if r["dataset"] == name):
            every = [r for r in rows if r["dataset"] == name and r["model"] == model]
            kept = [r["kept"] for r in every if "kept" in r]
            rs = [r for r in every if r["accuracy"] is not None]  # an int8 export refused has none
            acc, f1 = np.array([r["accuracy"] for r in rs]), np.array([r["macro_f1"] for r in rs])
            agree = [r["teacher_agreement"] for r in rs if "teacher_agreement" in r]
            summary.append({"dataset": name, "model": model, "seeds": len(rs),
                            "accuracy": f"{acc.mean():.3f} ± {acc.std():.3f}",
                            "macro_f1": f"{f1.mean():.3f} ± {f1.std():.3f}",
                            "teacher_agreement": f"{np.mean(agree):.3f}" if agree else "",
                            "kept": ", ".join(f"{k} {kept.count(k)}" for k in sorted(set(kept))),
                            "parameters": every[0]["parameters"], "file_kib": rs[0].get("file_kib") if rs else None,
                            "latency_ms": float(np.median([r["latency_ms"] for r in rs]))
                            if rs and "latency_ms" in rs[0] else None})
    means = {}
    for r in rows:  # a refused int8 export counts as 0, as in the accuracy suite: the user has no model
        means.setdefault(r["model"], {}).setdefault(r["dataset"], []).append(r["accuracy"] or 0.0)
    # means over the datasets every model was measured on, and again over a model's fewer ones (where a row, e.g. the
    # int8 student, was added to the benchmark after some datasets had run), so a mean compares like with like
    everywhere = list(dict.fromkeys(r["dataset"] for r in rows))
    for group in dict.fromkeys(tuple(d for d in everywhere if d in per) for per in means.values()):
        label = "mean" if len(group) == len(everywhere) else f"mean of {', '.join(group)}"
        for model, per in means.items():
            if all(d in per for d in group):
                summary.append({"dataset": label, "model": model, "seeds": "",
                                "accuracy": f"{np.mean([np.mean(per[d]) for d in group]):.3f}"})
    few = args.labels_per_class
    regime = (f"{few} labelled training windows per class, the rest of the training split unlabelled, no "
              "validation split" if few else "all training labels")
    print(write(results_name(args), f"Teacher, student alone and distilled, the student kept and MiniRocket "
                f"({regime}; test split, mean ± sd over seeds)", summary,
                ["dataset", "model", "seeds", "accuracy", "macro_f1", "teacher_agreement", "kept", "parameters",
                 "file_kib", "latency_ms"],
                # a local folder means nothing elsewhere; a reused teacher shows no fine-tuning time
                vars(args) | {"datasets": ",".join(everywhere), "teachers": bool(args.teachers), "per_seed": rows},
                notes="target (teacher + MiniRocket): the soft labels the student learns from, the teacher's "
                      "class probabilities mixed with MiniRocket's (ridge scores, softmax scale fitted out of fold) "
                      "at the weight `edgekit distill` chose on the validation windows (kept: the weight per seed; "
                      "at 0 the target is the teacher; no validation windows: no MiniRocket). "
                      "student alone / distilled: the first fits inside `edgekit distill`, on the same windows and "
                      "preprocessing (labels only vs labels + the teacher's soft labels; with unlabelled windows the "
                      "distilled student is the second of two rounds, taught by the mean of the teacher and the "
                      "first); student kept: the better of "
                      "the two on the validation windows, refitted on training + validation windows (without a "
                      "validation split: the distilled one). teacher_agreement: share of test windows where the "
                      "student's class is the teacher's. student kept, int8: the kept student exported as "
                      "`edgekit export --precision int8` makes it (ONNX; kept: ptq, or qat where post-training "
                      "quantisation was refused; refused: QAT was refused too, and that seed has no int8 "
                      "accuracy, and counts as 0 in the mean). MiniRocket is fitted on the labelled windows only. "
                      "Latency: one window, one thread, median; teacher in torch eager, the kept student through "
                      "onnxruntime (fp32 and int8), MiniRocket through aeon's predict. Parameters of MiniRocket: its "
                      "ridge classifier's weights (the random kernels are not learned)."))


if __name__ == "__main__":
    main()
