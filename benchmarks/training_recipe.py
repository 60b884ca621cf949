"""Ablation of the student's training recipe, from the previous default to the current one, step by step.

Each variant trains the ~10k-parameter student with `train_student` on the benchmark's own train/test split; the
UCR datasets that edgekit does not bundle go through the CSV path a user has (`train.csv` and `test.csv`, one
window after another, `--window L --label-column label --split group --test-groups test.csv`). Variants:

  before         early stopping on validation loss (300 epochs, patience 40), no batch norm, kernel 15,
                 no augmentation or label smoothing, no refit (the previous default)
  fixed          a fixed budget of 1500 steps with warm-up and cosine decay, last weights kept
  +batch norm    batch normalisation after every convolution
  +augment, ls   random gain, noise and time shift per batch, label smoothing 0.1
  default        + the kernel from the window length + refit on training and validation windows

    python benchmarks/training_recipe.py [--datasets ArrowHead,OSULeaf,...] [--seeds 2] [--jobs 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

DATASETS = "ArrowHead,OSULeaf,ItalyPowerDemand,UnitTest,GunPoint,ACSF1"
OLD_MODEL = {"batch_norm": False, "kernel": 15}
VARIANTS = {
    "before": (dict(epochs=300, patience=40, warmup=0.0, augment=False, label_smoothing=0.0, refit=False), OLD_MODEL),
    "fixed": (dict(augment=False, label_smoothing=0.0, refit=False), OLD_MODEL),
    "+batch norm": (dict(augment=False, label_smoothing=0.0, refit=False), {"kernel": 15}),
    "+augment, ls": (dict(refit=False), {"kernel": 15}),
    "default": ({}, {}),
}


def spec_of(name: str, work: Path) -> tuple[dict, dict]:
    """(data spec, split options) as a user gives them on the command line."""
    from edgekit.cli import _data_spec
    from edgekit.data import BUNDLED
    from edgekit.data.ucr_csv import write_ucr_csv

    if name in BUNDLED:
        return _data_spec(name, None, None, None, None, None, None), {}
    window = write_ucr_csv(name, work / name)
    return (_data_spec(str(work / name), window, None, None, "label", None, None),
            {"split_method": "group", "test_groups": ["test.csv"]})


def run_one(name: str, seed: int, variant: str, work: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from edgekit.train import TrainSettings, train_student

    settings, model = VARIANTS[variant]
    root = Path(work) / f"{name}-{seed}-{variant.replace(' ', '_').replace(',', '')}"
    spec, split = spec_of(name, root)
    s = train_student(spec, str(root / "ckpt"), settings=TrainSettings(seed=seed, **settings), model_options=model,
                      progress=False, **split)
    return {"dataset": name, "seed": seed, "variant": variant, "accuracy": s["metrics"]["test_accuracy"],
            "parameters": s["parameters"], "epochs": s["metrics"]["epochs_run"], "seconds": s["metrics"]["train_seconds"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=DATASETS)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    from results import write

    names = args.datasets.split(",")
    jobs = [(n, s, v) for n in names for s in range(args.seeds) for v in VARIANTS]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.jobs) as pool:
        for r in pool.map(run_one, *zip(*jobs), [tmp] * len(jobs)):
            rows.append(r)
            print(r, flush=True)
    table = []
    for v in VARIANTS:
        row = {"variant": v}
        for n in names:
            acc = [r["accuracy"] for r in rows if r["variant"] == v and r["dataset"] == n]
            row[n] = f"{np.mean(acc):.3f}"
        row["mean"] = f"{np.mean([float(row[n]) for n in names]):.3f}"
        row["max_seconds"] = max(r["seconds"] for r in rows if r["variant"] == v)
        table.append(row)
    print(write("training_recipe", "Student training recipe, step by step (test accuracy, mean over seeds)", table,
                ["variant", *names, "mean", "max_seconds"], vars(args) | {"per_seed": rows},
                notes="Each row adds one change to the row above (see the module docstring); `default` is what "
                      "`edgekit train` does with no flags. Datasets that edgekit does not bundle go through the "
                      "CSV path. max_seconds: the slowest training run of the row (one thread, "
                      f"{args.jobs} runs at once)."))


if __name__ == "__main__":
    main()
