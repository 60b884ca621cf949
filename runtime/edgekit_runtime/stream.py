"""Reading sample streams from CSV and cutting them into windows as they arrive.

Rows are read one at a time, so a file of any length runs in flat memory. A bad row (wrong column count,
non-numeric or non-finite value, time going backwards) is reported with its line number and ends the current
segment: no window is ever built across it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterator, TextIO

import numpy as np

from .errors import UserError
from .preprocess import sliding_windows, window_labels


@dataclass
class Chunk:
    """Consecutive good samples; `new_segment` is true when a bad row separates them from the previous chunk."""

    times: np.ndarray  # [S] seconds
    values: np.ndarray  # [S, C] float32
    new_segment: bool
    labels: np.ndarray | None = None  # [S] class indices (-1: not a known class), when a label column is read


@dataclass
class ReadStats:
    rows: int = 0
    bad_rows: int = 0
    first_bad: list[str] = field(default_factory=list)


def parse_time(text: str) -> float:
    """Seconds from a number or an ISO-8601 timestamp (naive timestamps are read as UTC)."""
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        return (dt - datetime(1970, 1, 1)).total_seconds()
    return dt.timestamp()


def read_csv_chunks(
    f: TextIO,
    name: str,
    channels: tuple[str, ...],
    sampling_rate: float,
    time_column: str | None = "time",
    label_column: str | None = None,
    classes: tuple[str, ...] = (),
    chunk_rows: int = 4096,
    strict: bool = False,
    stats: ReadStats | None = None,
    on_bad: Callable[[str], None] | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of good samples from CSV text with a header row naming the columns.

    With `label_column`, each sample's label is read too, as an index into `classes` (-1 when not in it)."""
    stats = stats if stats is not None else ReadStats()
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
        raise UserError(f"{name}: empty input, expected a header row with columns {', '.join(channels)}")
    header = [h.strip() for h in header]
    missing = [c for c in channels if c not in header]
    if missing:
        raise UserError(f"{name}: missing channel column(s) {', '.join(missing)}; the model needs {', '.join(channels)}")
    cols = [header.index(c) for c in channels]
    tcol = header.index(time_column) if time_column in header else None
    if label_column is not None and label_column not in header:
        raise UserError(f"{name}: no label column {label_column!r}")
    lcol = header.index(label_column) if label_column is not None else None
    class_index = {c: k for k, c in enumerate(classes)}

    times: list[float] = []
    rows: list[list[float]] = []
    labels: list[int] = []
    new_segment = False
    last_t = -math.inf
    n = 0

    def flush(next_new_segment: bool) -> Iterator[Chunk]:
        nonlocal times, rows, labels, new_segment
        if rows:
            yield Chunk(np.asarray(times, np.float64), np.asarray(rows, np.float32), new_segment,
                        np.asarray(labels, np.int64) if lcol is not None else None)
            new_segment = False
        times, rows, labels = [], [], []
        new_segment = new_segment or next_new_segment

    for lineno, record in enumerate(reader, start=2):
        if not record:
            continue
        stats.rows += 1
        problem = None
        if len(record) != len(header):
            problem = f"expected {len(header)} columns, got {len(record)}"
        else:
            try:
                vals = [float(record[i]) for i in cols]
                t = parse_time(record[tcol]) if tcol is not None else n / sampling_rate
            except ValueError:
                problem = "non-numeric value"
            else:
                if not all(math.isfinite(v) for v in vals) or not math.isfinite(t):
                    problem = "NaN or infinite value"
                elif t < last_t:
                    problem = f"time goes backwards ({t} after {last_t})"
        if problem is not None:
            msg = f"{name}:{lineno}: bad row: {problem}"
            if strict:
                raise UserError(msg)
            stats.bad_rows += 1
            if on_bad is not None:
                on_bad(msg)
            yield from flush(True)
            continue
        last_t = t
        n += 1
        times.append(t)
        rows.append(vals)
        if lcol is not None:
            labels.append(class_index.get(record[lcol].strip(), -1))
        if len(rows) >= chunk_rows:
            yield from flush(False)
    yield from flush(False)


class Windower:
    """Turns chunks of samples into the windows the batch path would cut from the concatenated segment."""

    def __init__(self, window: int, stride: int, n_channels: int):
        self.window, self.stride, self.n_channels = window, stride, n_channels
        self.reset()

    def reset(self) -> None:
        self._values = np.empty((0, self.n_channels), np.float32)
        self._times = np.empty(0, np.float64)
        self._labels = np.empty(0, np.int64)

    def push(self, chunk: Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Add a chunk's samples; return the windows they complete: (end times [N], windows [N, C, window],
        majority labels [N] or None)."""
        if chunk.new_segment:
            self.reset()
        v = np.concatenate([self._values, chunk.values])
        t = np.concatenate([self._times, chunk.times])
        lab = np.concatenate([self._labels, chunk.labels]) if chunk.labels is not None else None
        windows = sliding_windows(np.ascontiguousarray(v), self.window, self.stride)
        n = len(windows)
        ends = t[np.arange(n) * self.stride + self.window - 1]
        wlabels = None
        if lab is not None:
            wlabels = window_labels(lab[: (n - 1) * self.stride + self.window], self.window, self.stride) if n \
                else np.empty(0, np.int64)
        keep = n * self.stride
        self._values, self._times = v[keep:], t[keep:]
        if lab is not None:
            self._labels = lab[keep:]
        return ends, windows, wlabels
