"""Does pretraining help? Few labels: the fine-tuned pretrained teacher vs the same teacher trained from scratch.

For each dataset and seed: pretrain the teacher on the training split's windows without labels (masked
reconstruction), then fine-tune it on `--labels-per-class` labelled windows per class; train the same architecture
from scratch on the same labelled windows; compare test macro-F1 on the benchmark's own test split.

    python benchmarks/teacher_pretraining.py [--datasets JapaneseVowels,BasicMotions] [--seeds 3]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="JapaneseVowels,BasicMotions")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--labels-per-class", type=int, default=3)
    ap.add_argument("--size", default="small")
    ap.add_argument("--steps", type=int, default=800, help="Pretraining steps.")
    ap.add_argument("--epochs", type=int, help="Fine-tuning epochs [default: the fine-tuning recipe's steps].")
    args = ap.parse_args()

    from edgekit.settings import DataSettings, FinetuneSettings, SplitSettings, TeacherSettings
    from edgekit.teacher.finetune import finetune
    from edgekit.teacher.run import start_or_resume
    from edgekit.teacher.settings import PretrainSettings
    from edgekit.train_settings import FINETUNE
    from results import write

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.split(","):
            spec = DataSettings(name).spec()
            for seed in range(args.seeds):
                run = Path(tmp) / f"{name}-{seed}"
                settings = PretrainSettings(steps=args.steps, warmup=50, eval_every=args.steps,
                                            checkpoint_every=args.steps, seed=seed)
                pre = start_or_resume(spec, str(run / "pretrained"), TeacherSettings(size=args.size), settings,
                                      SplitSettings(), progress=False)
                common = dict(finetuning=FinetuneSettings(args.labels_per_class), progress=False,
                              settings=replace(FINETUNE, seed=seed, epochs=args.epochs))
                a = finetune(spec, str(run / "ft"), TeacherSettings(pretrained=str(run / "pretrained")), **common)
                b = finetune(spec, str(run / "scratch"), TeacherSettings(size=args.size), **common)
                row = {"dataset": name, "seed": seed, "labelled_windows": a["windows"]["train"],
                       "pretrain_val_rmse": pre["final_val_rmse"],
                       "pretrained_f1": a["test_macro_f1"], "scratch_f1": b["test_macro_f1"],
                       "pretrained_acc": a["test_accuracy"], "scratch_acc": b["test_accuracy"]}
                rows.append(row)
                print(row, flush=True)
    summary = []
    for name in args.datasets.split(","):
        r = [x for x in rows if x["dataset"] == name]
        p, s = np.array([x["pretrained_f1"] for x in r]), np.array([x["scratch_f1"] for x in r])
        summary.append({"dataset": name, "seed": "mean ± sd", "labelled_windows": r[0]["labelled_windows"],
                        "pretrained_f1": f"{p.mean():.3f} ± {p.std():.3f}",
                        "scratch_f1": f"{s.mean():.3f} ± {s.std():.3f}", "gain": f"{(p - s).mean():+.3f}"})
    cols = ["dataset", "seed", "labelled_windows", "pretrain_val_rmse", "pretrained_f1", "scratch_f1",
            "pretrained_acc", "scratch_acc", "gain"]
    print(write("teacher_pretraining", f"Pretrained vs from-scratch teacher, {args.labels_per_class} labels per class "
                f"(teacher '{args.size}')", rows + summary, cols, vars(args),
                notes="Test macro-F1 on each benchmark's own test split. Pretraining used the training split's "
                      "windows without labels; both arms fine-tune on the same labelled windows."))


if __name__ == "__main__":
    main()
