"""`edgekit run`: stream samples through preprocessing and the model, one JSON line per window."""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

import numpy as np

from .engine import check_model, choose_models, open_model
from .errors import UserError
from .files import atomic_write, check_not_an_input
from .model_dir import load_bundle
from .readers import ReadStats, live_lines, read_chunks, read_parquet_chunks
from .stream import StreamPreprocessor

SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


class Runner:
    def __init__(self, bundle, threads: int = 1, stride: int | None = None, batch: int = 32,
                 backend: str | None = None, precision: str | None = None, trust: list[bytes] | None = None):
        self.bundle = load_bundle(bundle, trust=trust)
        self.pre = self.bundle.preprocessing
        self.model_file = choose_models(self.bundle, backend, precision)[0]
        self.model = open_model(self.model_file, threads=threads, backend=backend)
        check_model(self.model, len(self.pre.channels), self.pre.window, len(self.bundle.classes),
                    f"{bundle}: {self.model_file.name}")
        self.stride = self.pre.stride if stride is None else stride
        if self.stride < 1 or batch < 1:
            raise UserError("--stride and --batch must be positive")
        self.batch = batch
        # Warm up once (numba kernel load, the backend's first run) so the first window's latency is honest.
        self.model.logits(self.pre.transform_windows(np.zeros((1, len(self.pre.channels), self.pre.window),
                                                              np.float32)))

    def predict(self, ends: np.ndarray, windows: np.ndarray, source: str,
                labels: np.ndarray | None = None) -> Iterator[dict]:
        """Classify model-ready `[N, C, T]` windows; yield one record per window."""
        classes = self.bundle.classes
        for i in range(0, len(windows), self.batch):
            t0 = time.perf_counter()
            probs = self.model.predict_proba(windows[i : i + self.batch])
            latency_ms = (time.perf_counter() - t0) * 1e3 / len(probs)
            for j, (end, p) in enumerate(zip(ends[i : i + self.batch], probs)):
                if not np.isfinite(p).all():  # the readers' value limits should prevent this; never write NaN
                    print(f"edgekit: warning: {source}: window ending at {end:g}: the model's output is not finite; "
                          "window skipped", file=sys.stderr, flush=True)
                    continue
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

    def run_stream(self, lines: Iterable[str | None], source: str, fmt: str | None = None, strict: bool = False,
                   label_column: str | None = None, only_changes: bool = False) -> Iterator[dict]:
        """Records for every window of a line stream (CSV or JSON lines), or of a Parquet file (`lines` is then its
        path); a summary goes to stderr at the end."""
        stream = StreamPreprocessor(self.pre, self.stride)
        stats = ReadStats()
        options = dict(label_column=label_column, classes=self.bundle.classes, strict=strict, stats=stats,
                       on_bad=lambda msg: print(f"edgekit: warning: {msg}", file=sys.stderr, flush=True))
        if fmt == "parquet":
            chunks = read_parquet_chunks(lines, self.pre.channels, self.pre.sampling_rate, **options)
        else:
            chunks = read_chunks(lines, source, self.pre.channels, self.pre.sampling_rate, fmt=fmt, **options)
        n_windows = n_correct = n_unknown = 0
        last_class = None
        for chunk in chunks:
            ends, windows, labels = stream.push(chunk)
            for rec in self.predict(ends, windows, source, labels):
                n_windows += 1
                n_correct += rec.get("label") == rec["class"]
                n_unknown += label_column is not None and rec["label"] is None
                if only_changes and rec["class"] == last_class:
                    continue
                last_class = rec["class"]
                yield rec
        summary = f"{stats.rows} rows, {stats.bad_rows} bad rows skipped, {n_windows} windows"
        if label_column is not None and n_windows:
            summary += f", accuracy {n_correct / n_windows:.4f} against column {label_column!r}"
            if n_unknown:
                summary += (f" ({n_unknown} windows' labels are none of the model's classes "
                            f"{', '.join(self.bundle.classes)}, and count as wrong)")
        print(f"edgekit: {source}: {summary}", file=sys.stderr, flush=True)
        if stats.rows and stats.bad_rows == stats.rows:
            raise UserError(f"{source}: all {stats.rows} rows are bad (reasons above): nothing was classified")

    def run_path(self, input_path: str, out: str | None = None, fmt: str | None = None, follow: bool = False,
                 idle_timeout: float | None = None, **options) -> None:
        """Run on a file, a directory of files, or `-` (stdin); write JSON lines to `out` or stdout."""
        live = follow or input_path == "-"
        if out is not None and input_path != "-":
            check_not_an_input(out, input_path)
        if idle_timeout is not None and not (follow and math.isfinite(idle_timeout)):
            raise UserError("--idle-timeout takes a number of seconds, and applies with --follow only")
        sources = self._sources(input_path, fmt, follow, idle_timeout)
        with _sink(out, live) as sink:
            for name, lines, source_fmt in sources:
                for rec in self.run_stream(lines, name, fmt=source_fmt, **options):
                    sink.write(json.dumps(rec) + "\n")

    def _sources(self, input_path: str, fmt: str | None, follow: bool, idle_timeout: float | None):
        if input_path == "-":
            if follow or fmt == "parquet":
                raise UserError("stdin takes CSV or JSON lines, and is followed anyway (no --follow)")
            yield "<stdin>", live_lines(sys.stdin.buffer, "<stdin>"), fmt
            return
        path = Path(input_path)
        if path.is_dir():
            if follow:
                raise UserError(f"{path}: --follow needs a single file, not a directory")
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIX_FORMATS)
            if not files:
                raise UserError(f"{path}: no {', '.join(SUFFIX_FORMATS)} files in this directory")
        elif path.is_file():
            files = [path]
        else:
            raise UserError(f"{path}: no such file or directory")
        for p in files:
            if (fmt or SUFFIX_FORMATS.get(p.suffix.lower())) == "parquet":
                if follow:
                    raise UserError(f"{p}: --follow reads growing text files, not Parquet")
                yield str(p), p, "parquet"
                continue
            try:
                f = open(p, "rb")
            except OSError as e:
                raise UserError(f"{p}: cannot open ({e.strerror})") from None
            with f:
                yield str(p), live_lines(f, str(p), follow, idle_timeout=idle_timeout), \
                    fmt or SUFFIX_FORMATS.get(p.suffix.lower())


class _Output:
    """Where the JSON lines go. A file is opened at the first write, so a run refused before its first window
    leaves none; a failed write (disk full, /dev/full, a closed pipe) is a UserError."""

    def __init__(self, name: str, open_file: Callable[[], TextIO], live: bool):
        self.name, self.open_file, self.live = name, open_file, live
        self.file: TextIO | None = None

    def write(self, text: str, flush: bool = False) -> None:
        try:
            if self.file is None:
                self.file = self.open_file()
            self.file.write(text)
            if flush or self.live:
                self.file.flush()
        except OSError as e:
            raise UserError(f"{self.name}: cannot write ({e.strerror})") from None


@contextmanager
def _sink(out: str | None, live: bool) -> Iterator[_Output]:
    """stdout; or a file written atomically (complete or absent), except for live input, where the output
    grows line by line as windows arrive. A run that ends cleanly leaves its output even without windows."""
    if out is None:
        sink = _Output("<stdout>", lambda: sys.stdout, live)
        yield sink
        sink.write("", flush=True)
    elif live:
        sink = _Output(out, lambda: open(out, "w"), live)
        try:
            yield sink
            sink.write("", flush=True)
        finally:
            if sink.file is not None:
                with suppress(OSError):  # a failed write has been reported already
                    sink.file.close()
    else:
        with atomic_write(out) as f:
            sink = _Output(out, lambda: f, live)
            yield sink
            sink.write("", flush=True)
