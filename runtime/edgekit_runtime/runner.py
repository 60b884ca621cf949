"""`edgekit run`: stream samples through preprocessing and the model, one JSON line per window."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Iterator, TextIO

import numpy as np

from .engine import OnnxModel
from .errors import UserError
from .files import atomic_write
from .model_dir import load_model_dir
from .stream import ReadStats, Windower, read_csv_chunks


class Runner:
    def __init__(self, model_dir, threads: int = 1, stride: int | None = None, batch: int = 32):
        self.model_dir = load_model_dir(model_dir)
        self.pre = self.model_dir.preprocessing
        self.model = OnnxModel(self.model_dir.model_file, threads=threads)
        self.stride = stride or self.pre.stride
        if self.stride < 1 or batch < 1:
            raise UserError("--stride and --batch must be positive")
        self.batch = batch
        # Warm up once (numba kernel load, onnxruntime's first run) so the first window's latency is honest.
        self.model.logits(self.pre.normalize_windows(np.zeros((1, len(self.pre.channels), self.pre.window), np.float32)))

    def predict(self, ends: np.ndarray, windows: np.ndarray, source: str,
                labels: np.ndarray | None = None) -> Iterator[dict]:
        """Preprocess and classify raw `[N, C, T]` windows; yield one record per window."""
        classes = self.model_dir.classes
        for i in range(0, len(windows), self.batch):
            t0 = time.perf_counter()
            x = self.pre.normalize_windows(windows[i : i + self.batch])
            probs = self.model.predict_proba(x)
            latency_ms = (time.perf_counter() - t0) * 1e3 / len(x)
            for j, (end, p) in enumerate(zip(ends[i : i + self.batch], probs)):
                rec = {
                    "source": source,
                    "window_end": float(end),
                    "class": classes[int(np.argmax(p))],
                    "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)},
                    "latency_ms": round(latency_ms, 4),
                }
                if labels is not None:
                    k = labels[i + j]
                    rec["label"] = classes[k] if k >= 0 else None
                yield rec

    def run_stream(self, f: TextIO, source: str, strict: bool = False,
                   label_column: str | None = None) -> Iterator[dict]:
        pre = self.pre
        windower = Windower(pre.window, self.stride, len(pre.channels))
        stats = ReadStats()
        chunks = read_csv_chunks(
            f, source, pre.channels, pre.sampling_rate, label_column=label_column, classes=self.model_dir.classes,
            strict=strict, stats=stats, on_bad=lambda msg: print(f"edgekit: warning: {msg}", file=sys.stderr),
        )
        n_windows = n_correct = 0
        for chunk in chunks:
            ends, windows, labels = windower.push(chunk)
            for rec in self.predict(ends, windows, source, labels):
                n_windows += 1
                n_correct += rec.get("label") == rec["class"]
                yield rec
        summary = f"{stats.rows} rows, {stats.bad_rows} bad rows skipped, {n_windows} windows"
        if label_column is not None and n_windows:
            summary += f", accuracy {n_correct / n_windows:.4f} against column {label_column!r}"
        print(f"edgekit: {source}: {summary}", file=sys.stderr)

    def run_path(self, input_path: str, out: str | None = None, strict: bool = False,
                 label_column: str | None = None) -> None:
        path = Path(input_path)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".csv")
            if not files:
                raise UserError(f"{path}: no .csv files in this directory")
        elif path.is_file():
            files = [path]
        else:
            raise UserError(f"{path}: no such file or directory")
        if out is None:
            self._run_files(files, sys.stdout, strict, label_column)
            return
        with atomic_write(out) as sink:
            self._run_files(files, sink, strict, label_column)

    def _run_files(self, files: list[Path], sink: TextIO, strict: bool, label_column: str | None) -> None:
        for p in files:
            try:
                f = open(p, newline="")
            except OSError as e:
                raise UserError(f"{p}: cannot open ({e.strerror})") from None
            with f:
                for rec in self.run_stream(f, str(p), strict=strict, label_column=label_column):
                    sink.write(json.dumps(rec) + "\n")
