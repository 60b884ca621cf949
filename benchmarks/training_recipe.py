"""Ablations of the student's training recipe on real data, through the paths a user has.

Each variant trains the ~10k-parameter student with `train_student` on the benchmark's own train/test split; the
UCR datasets that edgekit does not bundle go through the CSV path a user has (`train.csv` and `test.csv`, one
window after another, `--window L --label-column label --split group --test-groups test.csv`).

`--ablation steps` (results/training_recipe.md): from an older default to the current one, step by step.

  before         early stopping on validation loss (300 epochs, patience 40), no batch norm, kernel 15,
                 no augmentation or label smoothing, no refit
  fixed          a fixed budget of 1500 steps of 16 windows with warm-up and cosine decay, last weights kept
  +batch norm    batch normalisation after every convolution
  +augment, ls   random gain, noise and time shift per batch, label smoothing 0.1
  1500×16        + the kernel from the window length + refit on training and validation windows
  default        the same with 4000 steps of 64 windows

`--ablation budget` (results/training_budget.md): the first fit only (no refit, so the validation windows are left
out of training), one change at a time against the 1500×16 recipe: steps and batch size (how many epochs the
data gets), learning rate, weight decay, dropout, augmentation, and the student's shape (univariate spatial kernel,
number of scales, scale-integration kernel, branch kernel).

    python benchmarks/training_recipe.py [--ablation steps|budget] [--datasets ArrowHead,OSULeaf,...] [--seeds 2]
                                         [--jobs 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import dataset_spec  # noqa: E402

DATASETS = {"steps": "ArrowHead,OSULeaf,ItalyPowerDemand,UnitTest,GunPoint,ACSF1",
            "budget": "ACSF1,PLAID,GunPoint,BasicMotions,JapaneseVowels,ArrowHead,OSULeaf,ItalyPowerDemand"}
OLD_MODEL = {"batch_norm": False, "kernel": 15}
OLD = dict(steps=1500, batch_size=16)  # the budget before 4000 steps of 64 windows
FIRST = dict(OLD, refit=False)
VARIANTS = {
    "steps": {
        "before": (dict(epochs=300, patience=40, warmup=0.0, augment=False, label_smoothing=0.0, refit=False),
                   OLD_MODEL),
        "fixed": (dict(OLD, augment=False, label_smoothing=0.0, refit=False), OLD_MODEL),
        "+batch norm": (dict(OLD, augment=False, label_smoothing=0.0, refit=False), {"kernel": 15}),
        "+augment, ls": (dict(OLD, refit=False), {"kernel": 15}),
        "1500×16": (OLD, {}),
        "default": ({}, {}),
    },
    "budget": {
        "1500×16": (FIRST, {}),
        "4000×16": (dict(FIRST, steps=4000), {}),
        "1500×32": (dict(FIRST, batch_size=32), {}),
        "4000×32": (dict(FIRST, steps=4000, batch_size=32), {}),
        "8000×32": (dict(FIRST, steps=8000, batch_size=32), {}),
        "4000×64 (default)": (dict(refit=False), {}),
        "4000×64, lr 6e-3": (dict(refit=False, lr=6e-3), {}),
        "4000×64, weight decay 0.05": (dict(refit=False, weight_decay=0.05), {}),
        "1500×16, lr 1e-3": (dict(FIRST, lr=1e-3), {}),
        "1500×16, no dropout": (FIRST, {"dropout": 0.0}),
        "1500×16, no augmentation": (dict(FIRST, augment=False), {}),
        "1500×16, univariate kernel 5": (FIRST, {"univariate_kernel": 5}),
        "1500×16, 5 scales": (FIRST, {"scales": 5}),
        "1500×16, 3 scales": (FIRST, {"scales": 3}),
        "1500×16, 2 scales": (FIRST, {"scales": 2}),
        "1500×16, scale kernel 3": (FIRST, {"scale_kernel": 3}),
        "1500×16, 3 scales, scale kernel 3": (FIRST, {"scales": 3, "scale_kernel": 3}),
        "1500×16, kernel 31": (FIRST, {"kernel": 31}),
    },
}


def run_one(name: str, seed: int, ablation: str, variant: str, work: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from edgekit.train import train_student
    from edgekit.train_settings import TrainSettings

    settings, model = VARIANTS[ablation][variant]
    root = Path(work) / f"{name}-{seed}-{variant.replace(' ', '_').replace(',', '')}"
    spec, split = dataset_spec(name, root)
    s = train_student(spec, str(root / "ckpt"), settings=TrainSettings(seed=seed, **settings), model_options=model,
                      progress=False, split=split)
    return {"dataset": name, "seed": seed, "variant": variant, "accuracy": s["metrics"]["test_accuracy"],
            "parameters": s["parameters"], "epochs": s["metrics"]["epochs_run"],
            "seconds": s["metrics"]["train_seconds"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ablation", choices=tuple(VARIANTS), default="steps")
    ap.add_argument("--datasets")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    args.datasets = args.datasets or DATASETS[args.ablation]
    names = args.datasets.split(",")
    jobs = [(n, s, args.ablation, v) for n in names for s in range(args.seeds) for v in VARIANTS[args.ablation]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.jobs) as pool:
        for r in pool.map(run_one, *zip(*jobs), [tmp] * len(jobs)):
            rows.append(r)
            print(r, flush=True)
    write_table(args.ablation, rows, names, vars(args))


def write_table(ablation: str, rows: list[dict], names: list[str], meta: dict) -> str:
    from results import write

    table = []
    for v in VARIANTS[ablation]:
        row = {"variant": v}
        for n in names:
            acc = [r["accuracy"] for r in rows if r["variant"] == v and r["dataset"] == n]
            row[n] = f"{np.mean(acc):.3f}" if acc else "-"
        done = [float(row[n]) for n in names if row[n] != "-"]
        row["mean"] = f"{np.mean(done):.3f}" if len(done) == len(names) else "-"
        row["max_seconds"] = max((r["seconds"] for r in rows if r["variant"] == v), default=None)
        table.append(row)
    if ablation == "steps":
        title, notes = "Student training recipe, step by step (test accuracy, mean over seeds)", (
            "Each row adds one change to the row above (see the module docstring); `default` is what "
            "`edgekit train` does with no flags. Datasets that edgekit does not bundle go through the CSV path. "
            f"max_seconds: the slowest training run of the row (one thread, {meta['jobs']} runs at once).")
    else:
        title, notes = "Student training budget and shape, one change at a time (test accuracy of the first fit, " \
                       "mean over seeds)", (
            "First fit only (no refit): the validation split (20%) is left out of training, so accuracies sit "
            "below `edgekit train`'s. steps×batch: how many windows the student sees; 1500×16 gave PLAID (537 "
            "training windows) 45 epochs, 4000×64 gives it 477. ArrowHead, OSULeaf and ItalyPowerDemand go through "
            "the CSV path. '-': not run. max_seconds: the slowest "
            f"training run of the row (one thread, {meta['jobs']} runs at once).")
    md = write("training_recipe" if ablation == "steps" else "training_budget", title, table,
               ["variant", *names, "mean", "max_seconds"], meta | {"per_seed": rows}, notes=notes)
    print(md)
    return md


if __name__ == "__main__":
    main()
