"""Reading samples from CSV or JSON lines (files, growing files, stdin) or Parquet, as chunks of good rows.

Rows are read one at a time, so input of any length runs in flat memory. A bad row (wrong column count, missing
field, non-numeric or non-finite value, time going backwards) is reported with its line number and ends the
current segment: no window is ever built across it.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
import select
import time
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np

from .errors import UserError
from .stream import Chunk

FORMATS = ("csv", "jsonl")


@dataclass
class ReadStats:
    rows: int = 0
    bad_rows: int = 0


def parse_time(value) -> float:
    """Seconds from a number or an ISO-8601 timestamp (naive timestamps are read as UTC)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value)
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        return (dt - datetime(1970, 1, 1)).total_seconds()
    return dt.timestamp()


def live_lines(stream: BinaryIO, follow: bool, poll_s: float = 0.1,
               idle_timeout: float | None = None) -> Iterator[str | None]:
    """Lines from a pipe or a growing file as they arrive. Yields None whenever no new data came for `poll_s`
    (so the caller can act on what it has), and a partial last line only once it is complete.

    A pipe ends at EOF. With `follow`, EOF of a file means "wait for more"; the stream then ends only after
    `idle_timeout` seconds without data (never, when None)."""
    fd = stream.fileno()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    idle_since = time.monotonic()
    while True:
        if not follow:
            ready, _, _ = select.select([fd], [], [], poll_s)
            if not ready:
                yield None
                continue
        data = os.read(fd, 1 << 16)
        if data:
            idle_since = time.monotonic()
            pending += decoder.decode(data)
            *lines, pending = pending.split("\n")
            for line in lines:
                yield line + "\n"
            continue
        if not follow:  # EOF of a pipe
            break
        if idle_timeout is not None and time.monotonic() - idle_since > idle_timeout:
            break
        yield None
        time.sleep(poll_s)
    if pending:
        yield pending


class _Rows:
    """Turns parsed records into validated samples; shared by the CSV and JSON-lines readers."""

    def __init__(self, name, channels, sampling_rate, strict, stats, on_bad):
        self.name, self.channels, self.rate = name, channels, sampling_rate
        self.strict, self.stats, self.on_bad = strict, stats, on_bad
        self.last_t = -math.inf
        self.n = 0

    def bad(self, lineno: int, problem: str) -> None:
        msg = f"{self.name}:{lineno}: bad row: {problem}"
        if self.strict:
            raise UserError(msg)
        self.stats.bad_rows += 1
        if self.on_bad is not None:
            self.on_bad(msg)

    def sample(self, lineno: int, read, problem: str) -> tuple[float, list[float]] | None:
        """(time, values) from `read()` -> (values, time or None) if the row is good; else report `problem` (or
        what `check` finds) and return None."""
        try:
            vals, t = read()
        except (TypeError, ValueError):
            self.bad(lineno, problem)
            return None
        t = self.check(lineno, vals, t)
        return None if t is None else (t, vals)

    def check(self, lineno: int, vals: list[float], t: float | None) -> float | None:
        """The sample's time if the row is good; else report it and return None."""
        if t is None:
            t = self.n / self.rate
        if not all(math.isfinite(v) for v in vals) or not math.isfinite(t):
            self.bad(lineno, "NaN or infinite value")
            return None
        if t < self.last_t:
            self.bad(lineno, f"time goes backwards ({t} after {self.last_t})")
            return None
        self.last_t = t
        self.n += 1
        return t


def _csv_records(lines: Iterable[str | None], rows: _Rows, time_column, label_column, class_index):
    reader_lines = iter(lines)
    header_line = next((ln for ln in reader_lines if ln is not None and ln.strip()), None)
    if header_line is None:
        raise UserError(f"{rows.name}: empty input, expected a header row with columns {', '.join(rows.channels)}")
    header = [h.strip() for h in next(csv.reader([header_line]))]
    missing = [c for c in rows.channels if c not in header]
    if missing:
        raise UserError(f"{rows.name}: missing channel column(s) {', '.join(missing)}; "
                        f"the model needs {', '.join(rows.channels)}")
    cols = [header.index(c) for c in rows.channels]
    tcol = header.index(time_column) if time_column in header else None
    if label_column is not None and label_column not in header:
        raise UserError(f"{rows.name}: no label column {label_column!r}")
    lcol = header.index(label_column) if label_column is not None else None
    lineno = 1
    for line in reader_lines:
        if line is None:
            yield None
            continue
        lineno += 1
        if not line.strip():
            continue
        rows.stats.rows += 1
        try:
            record = next(csv.reader([line]))
        except csv.Error as e:
            rows.bad(lineno, f"malformed CSV ({e})")
            yield False
            continue
        if len(record) != len(header):
            rows.bad(lineno, f"expected {len(header)} columns, got {len(record)}")
            yield False
            continue
        good = rows.sample(lineno, lambda: ([float(record[i]) for i in cols],
                                            parse_time(record[tcol]) if tcol is not None else None),
                           "non-numeric value")
        if good is None:
            yield False
            continue
        yield *good, class_index.get(record[lcol].strip(), -1) if lcol is not None else None


def _jsonl_records(lines: Iterable[str | None], rows: _Rows, time_column, label_column, class_index):
    lineno = 0
    for line in lines:
        if line is None:
            yield None
            continue
        lineno += 1
        if not line.strip():
            continue
        rows.stats.rows += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            rows.bad(lineno, "not valid JSON")
            yield False
            continue
        if not isinstance(obj, dict):
            rows.bad(lineno, "expected a JSON object")
            yield False
            continue
        missing = [c for c in rows.channels if c not in obj]
        if missing:
            rows.bad(lineno, f"missing field(s) {', '.join(missing)}")
            yield False
            continue
        good = rows.sample(lineno, lambda: ([float(obj[c]) for c in rows.channels],
                                            parse_time(obj[time_column]) if time_column in obj else None),
                           "non-numeric value")
        if good is None:
            yield False
            continue
        yield *good, class_index.get(str(obj.get(label_column, "")), -1) if label_column is not None else None


def read_chunks(
    lines: Iterable[str | None],
    name: str,
    channels: tuple[str, ...],
    sampling_rate: float,
    fmt: str | None = None,
    time_column: str | None = "time",
    label_column: str | None = None,
    classes: tuple[str, ...] = (),
    chunk_rows: int = 4096,
    strict: bool = False,
    stats: ReadStats | None = None,
    on_bad: Callable[[str], None] | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of good samples from CSV (header row naming the columns) or JSON lines (one object per line).

    `lines` may yield None for "no more data for now": what has been read is then passed on at once. `fmt`
    None detects the format from the first line. With `label_column`, each sample's label is read too, as an
    index into `classes` (-1 when not in it)."""
    stats = stats if stats is not None else ReadStats()
    lines = iter(lines)
    if fmt is None:
        head = []
        for ln in lines:
            head.append(ln)
            if ln is not None and ln.strip():
                break
        fmt = "jsonl" if head and head[-1] is not None and head[-1].lstrip().startswith("{") else "csv"
        lines = chain(head, lines)
    if fmt not in FORMATS:
        raise UserError(f"unknown input format {fmt!r}; allowed: {', '.join(FORMATS)}")
    rows = _Rows(name, channels, sampling_rate, strict, stats, on_bad)
    parse = _csv_records if fmt == "csv" else _jsonl_records
    yield from _chunks(parse(lines, rows, time_column, label_column, {c: k for k, c in enumerate(classes)}),
                       label_column is not None, chunk_rows)


def read_parquet_chunks(path, channels: tuple[str, ...], sampling_rate: float, time_column: str | None = "time",
                        label_column: str | None = None, classes: tuple[str, ...] = (), chunk_rows: int = 4096,
                        strict: bool = False, stats: ReadStats | None = None,
                        on_bad: Callable[[str], None] | None = None) -> Iterator[Chunk]:
    """Chunks of good samples from a Parquet file, read in row batches; bad rows are reported by row number.
    Needs pyarrow, which the runtime does not depend on."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow), or convert it to CSV") from None
    try:
        f = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own error types for unreadable files
        raise UserError(f"{path}: not a readable Parquet file ({e})") from None
    names = f.schema_arrow.names
    missing = [c for c in channels if c not in names]
    if missing:
        raise UserError(f"{path}: missing channel column(s) {', '.join(missing)}; the model needs {', '.join(channels)}")
    if label_column is not None and label_column not in names:
        raise UserError(f"{path}: no label column {label_column!r}")
    tcol = time_column if time_column in names else None
    columns = [*channels, *([tcol] if tcol else []), *([label_column] if label_column else [])]
    rows = _Rows(str(path), channels, sampling_rate, strict, stats if stats is not None else ReadStats(), on_bad)
    class_index = {c: k for k, c in enumerate(classes)}

    def records():
        rowno = 0
        for batch in f.iter_batches(batch_size=chunk_rows, columns=columns):
            cols = {c: batch.column(c).to_pylist() for c in columns}
            for i in range(batch.num_rows):
                rowno += 1
                rows.stats.rows += 1
                good = rows.sample(rowno, lambda: ([float(cols[c][i]) for c in channels],
                                                   parse_time(cols[tcol][i]) if tcol else None),
                                   "non-numeric or missing value")
                if good is None:
                    yield False
                    continue
                yield *good, class_index.get(str(cols[label_column][i]), -1) if label_column else None

    yield from _chunks(records(), label_column is not None, chunk_rows)


def _chunks(records, with_labels: bool, chunk_rows: int) -> Iterator[Chunk]:
    """Group good records into chunks; None (no more data for now) flushes, False (a bad row) also starts a new
    segment."""
    times: list[float] = []
    values: list[list[float]] = []
    labels: list[int] = []
    new_segment = False
    for rec in records:
        if rec is None or rec is False or len(values) >= chunk_rows:
            if values:
                yield Chunk(np.asarray(times, np.float64), np.asarray(values, np.float32), new_segment,
                            np.asarray(labels, np.int64) if with_labels else None)
                new_segment = False
                times, values, labels = [], [], []
            new_segment = new_segment or rec is False
            if rec is None or rec is False:
                continue
        t, vals, label = rec
        times.append(t)
        values.append(vals)
        if with_labels:
            labels.append(label)
    if values:
        yield Chunk(np.asarray(times, np.float64), np.asarray(values, np.float32), new_segment,
                    np.asarray(labels, np.int64) if with_labels else None)
