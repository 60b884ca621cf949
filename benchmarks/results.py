"""Writing a benchmark's results: JSON for scripts and a markdown table for people, side by side."""

from __future__ import annotations

import json
import platform
import time
from contextlib import contextmanager
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@contextmanager
def torch_threads_kept():
    """Restore torch's thread count on exit: aeon's MiniRocket, even with n_jobs=1, raises it to the core count
    (numba's OpenMP is torch's), so every later seed of a benchmark would train with threads it was not given."""
    import torch

    n = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(n)


def dataset_spec(name: str, work: Path):
    """(data spec, SplitSettings) of a dataset as a user gives it on the command line: a bundled one by name, any
    other UCR/UEA dataset that aeon ships written as CSV files (`train.csv`, `test.csv`) and split by file, as
    `edgekit train DIR --window L --label-column label --split group --test-groups test.csv`."""
    from edgekit.data import BUNDLED
    from edgekit.data.ucr_csv import write_ucr_csv
    from edgekit.settings import DataSettings, SplitSettings

    if name in BUNDLED:
        return DataSettings(name).spec(), SplitSettings()
    window = write_ucr_csv(name, work / name)
    return (DataSettings(str(work / name), window, label_column="label").spec(),
            SplitSettings("group", ("test.csv",)))


def median_latency_ms(fn, repeats: int = 50) -> float:
    """Median wall time of `fn()` in milliseconds over `repeats` calls, after one warm-up call."""
    import numpy as np

    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return float(np.median(out) * 1e3)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write(name: str, title: str, rows: list[dict], columns: list[str], meta: dict, notes: str = "") -> str:
    """Write results/NAME.json and results/NAME.md; return the markdown."""
    import torch

    RESULTS.mkdir(exist_ok=True)
    meta = {**meta, "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                                "torch": torch.__version__, "threads": torch.get_num_threads()}}
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    md = f"# {title}\n\n{markdown_table(rows, columns)}\n"
    if notes:
        md += f"\n{notes}\n"
    (RESULTS / f"{name}.md").write_text(md)
    return md
