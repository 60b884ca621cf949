"""Does the sweep's scaling law predict a student size it was not fitted on?

On JapaneseVowels (real: 9 speakers' LPC coefficients; its published test split is the grouped out-of-distribution
set, a held-out share of the training side the in-distribution one) `edgekit sweep` trains students of six widths
on labels, several seeds each. For each held-out size, error = E + A·N^(-alpha) is fitted on the other sizes and
its prediction (with the 90% bootstrap-over-seeds interval) is set against the measured mean error of the
held-out size. Held out: an interior size (interpolation) and the largest (extrapolation).

    python benchmarks/scaling_holdout.py [--dataset JapaneseVowels] [--seeds 4] [--epochs 60] [--jobs 2]

Grid points are kept under runs/scaling-holdout/, so a second run only refits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

BUDGETS = ["1k", "3k", "6k", "11k", "16k", "23k"]  # MSA-CNN widths 1..6 on JapaneseVowels


def main() -> None:
    from results import write

    from edgekit.data import load_spec
    from edgekit.scaling import fit
    from edgekit.sweep import SweepSettings, run_sweep
    from edgekit.data import resolve_split

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="JapaneseVowels")
    ap.add_argument("--budgets", default=",".join(BUDGETS))
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="runs/scaling-holdout")
    args = ap.parse_args()

    spec = {"dataset": args.dataset}
    method, groups = resolve_split(load_spec(spec), None, None)
    spec.update(split=method, test_groups=groups, seed=0, val=0.3, test=0.2)
    s = run_sweep(f"{args.out}/{args.dataset}", spec, None, args.budgets.split(","), [1.0], args.seeds,
                  SweepSettings(epochs=args.epochs), jobs=args.jobs, echo=print)
    sizes = sorted({p["parameters"] for p in s["points"]})
    rows = []
    for held in (sizes[len(sizes) // 2], sizes[-1]):
        for split in ("id", "ood"):
            pts = [(p["parameters"], p[f"{split}_error"], p["seed"]) for p in s["points"]]
            f = fit([q for q in pts if q[0] != held], predict_at=[held])
            measured = np.array([q[1] for q in pts if q[0] == held])
            row = {"split": split.upper(), "held_out_params": held,
                   "kind": "extrapolation" if held == sizes[-1] else "interpolation",
                   "fitted_sizes": len(sizes) - 1, "measured_error": float(measured.mean()),
                   "measured_std": float(measured.std()), "seeds": len(measured)}
            if f is None:
                row["within"] = "no fit"
            else:
                (p,) = f["predictions"]
                row.update(alpha=f["alpha"], E=f["E"], predicted_error=p["error"], interval_low=p["interval"][0],
                           interval_high=p["interval"][1],
                           within="yes" if p["interval"][0] <= row["measured_error"] <= p["interval"][1] else "no")
            rows.append(row)
    fits = {k: {"alpha": v["alpha"], "alpha_interval": v["alpha_interval"], "E": v["E"], "E_interval": v["E_interval"]}
            for k, v in s["fits"].items() if v and k.endswith("params")}
    notes = (f"{s['dataset']}: {s['windows']['train']} training windows, {s['windows']['id_test']} in-distribution "
             f"and {s['windows']['ood_test']} out-of-distribution (published test split) test windows; students "
             f"trained on labels for {args.epochs} epochs, {args.seeds} seeds per size, sizes {sizes}. Interval: 90% "
             "bootstrap over seeds of the fit on the other sizes; it does not include the seed noise of the held-out "
             "measurement itself (measured_std).\n\nFit on all sizes: "
             + "; ".join(f"{k.split('_')[0].upper()} alpha {v['alpha']:.2f} [{v['alpha_interval'][0]:.2f}, "
                         f"{v['alpha_interval'][1]:.2f}], E {v['E']:.3f} [{v['E_interval'][0]:.3f}, "
                         f"{v['E_interval'][1]:.3f}]" for k, v in fits.items()))
    md = write("scaling_holdout", "Scaling law: predicted vs measured error of a held-out student size", rows,
               ["split", "held_out_params", "kind", "alpha", "E", "predicted_error", "interval_low", "interval_high",
                "measured_error", "measured_std", "within"],
               {"dataset": s["dataset"], "budgets": args.budgets, "seeds": args.seeds, "epochs": args.epochs,
                "fits_all_sizes": fits, "points": s["points"]}, notes)
    print(md)


if __name__ == "__main__":
    main()
