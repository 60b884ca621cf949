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
from .preprocess import sliding_windows


@dataclass
class Chunk:
    """Consecutive good samples; `new_segment` is true when a bad row separates them from the previous chunk."""

    times: np.ndarray  # [S] seconds
    values: np.ndarray  # [S, C] float32
    new_segment: bool


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
    chunk_rows: int = 4096,
    strict: bool = False,
    stats: ReadStats | None = None,
    on_bad: Callable[[str], None] | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of good samples from CSV text with a header row naming the columns."""
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

    times: list[float] = []
    rows: list[list[float]] = []
    new_segment = False
    last_t = -math.inf
    n = 0

    def flush(next_new_segment: bool) -> Iterator[Chunk]:
        nonlocal times, rows, new_segment
        if rows:
            yield Chunk(np.asarray(times, np.float64), np.asarray(rows, np.float32), new_segment)
            new_segment = False
        times, rows = [], []
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

    def push(self, times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add samples; return (window end times [N], windows [N, C, window]) completed by them."""
        v = np.concatenate([self._values, values]) if len(self._values) else values
        t = np.concatenate([self._times, times]) if len(self._times) else times
        windows = sliding_windows(np.ascontiguousarray(v), self.window, self.stride)
        n = len(windows)
        ends = t[np.arange(n) * self.stride + self.window - 1]
        keep = n * self.stride if n else 0
        self._values, self._times = v[keep:], t[keep:]
        return ends, windows
