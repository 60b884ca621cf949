"""A UCR/UEA dataset that ships inside aeon, written as a user's recordings: `train.csv` and `test.csv`, one window
after another with a time column in seconds (1 Hz) and a label column. Benchmarks and slow tests use it to try
datasets edgekit does not bundle through the CSV path a user has:
`edgekit train DIR --window L --label-column label --split group --test-groups test.csv`."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np


def write_ucr_csv(name: str, folder: str | Path) -> int:
    """Write aeon's `name` (equal-length series) to `folder`; return the window length L."""
    import aeon.datasets

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = os.path.join(os.path.dirname(aeon.datasets.__file__), "data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for split in ("train", "test"):
            x, y = aeon.datasets.load_classification(name, split=split, extract_path=data)
            if not isinstance(x, np.ndarray):  # aeon gives a list of series when their lengths differ
                raise ValueError(f"{name}: its series differ in length; only equal-length datasets are written")
            n, c, t = x.shape
            rows = x.transpose(0, 2, 1).reshape(-1, c)
            labels = np.repeat(np.asarray(y).astype(str), t)
            with open(folder / f"{split}.csv", "w") as f:
                f.write("time," + ",".join(f"ch{i}" for i in range(c)) + ",label\n")
                for i, (row, label) in enumerate(zip(rows, labels)):
                    f.write(f"{i},{','.join(f'{v:.7g}' for v in row)},{label}\n")
    return t
