"""Post-training int8 vs quantisation-aware training, on real datasets and small and default students.

For each dataset, parameter budget and seed: train a student, export it to ONNX and TFLite int8 by PTQ, then
fine-tune it with `edgekit quantize --qat` and export again. Every int8 file is run by the board runtime on the
test split and compared with the ORIGINAL float model (accuracy, argmax agreement); `ptq_refused` says whether
the default int8 tolerance (agreement >= 0.95, accuracy drop <= 0.02) refuses the PTQ file, which is when
`edgekit quantize` falls back to QAT, and `qat_refused` whether it refuses the QAT file (checked against the
QAT-tuned model it was made from), which leaves the user without an int8 model.

    .venv/bin/python benchmarks/qat_fallback.py [--datasets BasicMotions,JapaneseVowels] [--budgets 1k,10k]
        [--seeds 0,1]

Writes results/qat_fallback.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import write  # noqa: E402


def int8_metrics(model_dir: Path, x: np.ndarray, labels: np.ndarray, ref: np.ndarray) -> dict:
    from edgekit_runtime.engine import open_model
    from edgekit_runtime.model_dir import load_bundle

    pred = open_model(load_bundle(model_dir).models[0]).logits(x).argmax(1)
    return {"accuracy": float((pred == labels).mean()), "agreement": float((pred == ref.argmax(1)).mean())}


def run_point(name: str, budget: str, seed: int, work: Path) -> list[dict]:
    from edgekit.settings import DataSettings
    from edgekit.train import train_student
    from edgekit.train_settings import TrainSettings

    root = work / name / f"{budget}-s{seed}"
    if not (root / "checkpoint").exists():
        train_student(DataSettings(name).spec(), str(root / "checkpoint"),
                      params=budget, settings=TrainSettings(seed=seed), progress=False)
    return compare(root / "checkpoint", root, {"dataset": name, "budget": budget, "seed": seed})


def compare(checkpoint: Path, root: Path, labels: dict) -> list[dict]:
    """PTQ and QAT int8 exports of `checkpoint` (written under `root`), one row per format."""
    from edgekit.checkpoint import load_checkpoint
    from edgekit.data import load_spec
    from edgekit.export import export_checkpoint
    from edgekit.models import count_parameters
    from edgekit.quantize import qat_checkpoint
    from edgekit.settings import ExportSettings
    from edgekit.data import split_from_spec
    from edgekit_exporters import DEFAULT_TOLERANCES

    ckpt = load_checkpoint(checkpoint)
    _, _, test = split_from_spec(load_spec(ckpt.data), ckpt.data)
    x = ckpt.preprocessing.prepare_windows(test.values)
    with torch.no_grad():
        ref = ckpt.model(torch.from_numpy(x)).numpy()
    accept_all = {"min_agreement": 0.0, "max_accuracy_drop": 1.0}
    limit = DEFAULT_TOLERANCES["int8"]
    rows = []
    for fmt in ("onnx", "tflite"):
        row = {**labels, "parameters": count_parameters(ckpt.model), "format": fmt,
               "float_accuracy": float((ref.argmax(1) == test.labels).mean())}
        qat = root / f"qat-{fmt}"  # QAT rounds the weights to the format's grid
        if not qat.exists():
            qat_checkpoint(str(checkpoint), str(qat), fmt, seed=labels.get("seed", 0), progress=False)
        for method, source in (("ptq", checkpoint), ("qat", qat)):
            v = export_checkpoint(str(source), str(root / f"{fmt}-{method}"),
                                  ExportSettings(fmt, "int8", **accept_all), overwrite=True)["verification"]
            m = int8_metrics(root / f"{fmt}-{method}", x, test.labels, ref)
            row[f"{method}_accuracy"], row[f"{method}_agreement"] = m["accuracy"], m["agreement"]
            # what the export checks: the file against the model it was made from (after QAT: the tuned one)
            row[f"{method}_refused"] = bool(limit.failures(v))
        rows.append(row)
        print(row, flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="BasicMotions,JapaneseVowels")
    ap.add_argument("--budgets", default="1k,10k")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--checkpoints", nargs="*", default=[],
                    help="existing checkpoints to compare as well (e.g. the students of `make demo`'s sweep)")
    ap.add_argument("--work", default="runs/bench-qat", help="checkpoints and exports (reused when present)")
    args = ap.parse_args()
    work = Path(args.work)
    rows = [r for name in args.datasets.split(",") for budget in args.budgets.split(",")
            for seed in map(int, args.seeds.split(",")) for r in run_point(name, budget, seed, work)]
    for i, c in enumerate(args.checkpoints):
        rows += compare(Path(c), work / f"given-{i}", {"dataset": c})
    cols = ["dataset", "budget", "parameters", "seed", "format", "float_accuracy", "ptq_accuracy", "ptq_agreement",
            "ptq_refused", "qat_accuracy", "qat_agreement", "qat_refused"]
    notes = ("Accuracy is on the test split; agreement is the share of test windows where the int8 file's argmax "
             "equals the original float model's. QAT: 30 epochs at lr 3e-4 (the `edgekit quantize` defaults), "
             "learning the float model's class probabilities on augmented training windows.")
    print(write("qat_fallback", "PTQ vs QAT int8, run by the board runtime", rows, cols, vars(args), notes))


if __name__ == "__main__":
    main()
