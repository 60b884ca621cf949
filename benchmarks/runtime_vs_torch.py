"""The board runtime against a torch process serving the same model: process start to first prediction, and
peak RSS. Trains a small BasicMotions model (few epochs: accuracy is irrelevant here) twice, without and with a
high-pass filter and resampling, exports and bundles each, then starts each kind of process several times,
alternating, and takes medians.

    python benchmarks/runtime_vs_torch.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from results import write

TORCH_SERVER = """
import time
t0 = time.perf_counter()
import sys, json
import numpy as np, torch
from edgekit.checkpoint import load_checkpoint
ckpt = load_checkpoint(sys.argv[1])
x = np.random.default_rng(0).normal(size=(1, len(ckpt.preprocessing.channels), ckpt.preprocessing.window))
with torch.no_grad():
    torch.softmax(ckpt.model(torch.from_numpy(ckpt.preprocessing.prepare_windows(x.astype(np.float32)))), -1)
from edgekit_runtime.coldstart import peak_rss_bytes
print(json.dumps({"peak_rss_bytes": peak_rss_bytes()}))
"""


def timed(cmd: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, json.loads(r.stdout.strip().splitlines()[-1])["peak_rss_bytes"]


def main(repeats: int = 5):
    from edgekit.bundle import build_bundle
    from edgekit.settings import DataSettings
    from edgekit.export import export_checkpoint
    from edgekit.train import train_student
    from edgekit.train_settings import TrainSettings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runtime_cmds = {}
        # the same model twice: window-level preprocessing only (numpy), and with a high-pass filter and resampling
        # (the numba kernels)
        for name, signal in (("runtime", None), ("runtime, filter + resampling", {"highpass": 0.5, "max_gap": 0.5})):
            run = root / name.replace(" ", "_").replace(",", "")
            train_student(DataSettings("BasicMotions").spec(), str(run / "ckpt"),
                          signal=signal, settings=TrainSettings(epochs=3, refit=False), progress=False)
            export_checkpoint(str(run / "ckpt"), str(run / "model"))
            build_bundle([str(run / "model")], str(run / "bundle"))
            runtime_cmds[name] = [sys.executable, "-m", "edgekit_runtime.coldstart", str(run / "bundle"),
                                  "model-fp32.onnx"]
        torch_cmd = [sys.executable, "-c", TORCH_SERVER, str(root / "runtime" / "ckpt")]
        commands = {**runtime_cmds, "torch": torch_cmd}
        for cmd in commands.values():
            timed(cmd)  # warm the OS file cache and the numba cache
        runs = {name: [] for name in commands}
        for _ in range(repeats):
            for name, cmd in commands.items():
                runs[name].append(timed(cmd))
    rows = []
    for name, r in runs.items():
        rows.append({"process": name, "start_to_prediction_s": float(np.median([t for t, _ in r])),
                     "peak_rss_mib": float(np.median([m for _, m in r])) / 2**20})
    rt, th = rows[0], rows[-1]
    summary = {"process": "torch / runtime",
               "start_to_prediction_s": th["start_to_prediction_s"] / rt["start_to_prediction_s"],
               "peak_rss_mib": th["peak_rss_mib"] / rt["peak_rss_mib"]}
    print(write("runtime_vs_torch", "Runtime process vs torch process, same model (BasicMotions MSA-CNN)",
                [*rows, summary], ["process", "start_to_prediction_s", "peak_rss_mib"], {"repeats": repeats},
                "Medians over alternating runs; the runtime process verifies the bundle's sha256 digests, streams one "
                "window through the preprocessing and runs onnxruntime: numpy alone for a model with window-level "
                "steps only, numba's kernels (cached) when it filters or resamples. The torch process loads the "
                "checkpoint with weights_only=True and runs the model eagerly. torch / runtime: against the first "
                "row."))


if __name__ == "__main__":
    main()
