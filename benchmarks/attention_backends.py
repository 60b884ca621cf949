"""Teacher attention backends at long windows: peak memory and time of one forward+backward, as ratios to dense.

Each (backend, length) runs in its own process so its peak RSS is its own. One teacher layer (d_model 64,
4 heads, time bias on) on a batch of one window with irregular timestamps. Dense is skipped (reported as over
budget) where its N×N score matrices alone would exceed the memory budget.

    python benchmarks/attention_backends.py [--lengths 256,1024,4096,8192] [--budget-gib 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BACKENDS = ("dense", "sparse", "scan")


def measure(backend: str, n: int, repeats: int) -> dict:
    import torch

    from edgekit.teacher.model import Teacher, TeacherConfig

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = TeacherConfig(d_model=64, layers=1, heads=4, ff=128, dropout=0.0, attention=backend, patch=1,
                        block=64, topk=4, chunk=256)
    model = Teacher(cfg)
    values = torch.randn(1, 1, n)  # one channel, one sample per token: n tokens
    times = torch.cumsum(torch.rand(1, n) * 2, 1)  # irregular sampling
    observed = torch.ones(1, n, dtype=torch.bool)
    tokens = model.tokenize(values, times, observed)
    head = tokens._replace(values=tokens.values[:, :64], times=tokens.times[:, :64], observed=tokens.observed[:, :64])
    model(head)[0].sum().backward()  # one-time start-up costs, not counted
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times_s = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(tokens)[0].square().mean().backward()
        times_s.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": min(times_s), "peak_mib": (peak - base) / 1024}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="256,512,1024,2048,4096,8192")
    ap.add_argument("--budget-gib", type=float, default=4.0, help="Memory budget for one forward+backward.")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args.repeats)))
        return

    from results import write

    rows = []
    for n in map(int, args.lengths.split(",")):
        row = {"tokens": n}
        for backend in BACKENDS:
            # dense keeps several [heads, N, N] float32 tensors (scores, bias, softmax, their gradients)
            if backend == "dense" and 6 * 4 * n * n * 4 > args.budget_gib * 2**30:
                row["dense_note"] = f"over the {args.budget_gib:g} GiB budget (not run)"
                continue
            out = subprocess.run([sys.executable, __file__, "--child", backend, str(n), "--repeats",
                                  str(args.repeats)], capture_output=True, text=True)
            if out.returncode != 0:
                row[f"{backend}_note"] = out.stderr.strip().splitlines()[-1][:120]
                continue
            r = json.loads(out.stdout)
            row[f"{backend}_s"], row[f"{backend}_mib"] = r["seconds"], r["peak_mib"]
            if r["peak_mib"] > args.budget_gib * 1024:
                row[f"{backend}_note"] = "over budget"
        for backend in ("sparse", "scan"):
            if "dense_s" in row and f"{backend}_s" in row:
                row[f"{backend}_time_ratio"] = row[f"{backend}_s"] / row["dense_s"]
                row[f"{backend}_mem_ratio"] = row[f"{backend}_mib"] / max(row["dense_mib"], 1e-3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    columns = ["tokens", "dense_s", "sparse_s", "scan_s", "dense_mib", "sparse_mib", "scan_mib", "sparse_time_ratio",
               "scan_time_ratio", "sparse_mem_ratio", "scan_mem_ratio", "dense_note"]
    print(write("attention_backends", "Teacher attention backends: one layer, forward+backward, batch 1", rows,
                columns, vars(args) | {"child": None},
                notes="Seconds and peak RSS (MiB above the process baseline) per forward+backward; ratios are "
                      "backend / dense measured in the same run. sparse: block 64, top-4 blocks; scan: tiles of "
                      "256, each query chunk recomputed in the backward pass."))


if __name__ == "__main__":
    main()
