"""Reading samples from CSV or JSON lines (files, growing files, stdin) or Parquet, as chunks of good rows.

Rows are read one at a time, so input of any length runs in flat memory. A bad row (wrong column count, missing
field, a value that is not a number, NaN, infinite or beyond MAX_ABS_VALUE, a time beyond MAX_TIME or going
backwards) is reported with its line number and ends the current segment: no window is ever built across it.

Text is UTF-8 (a leading BOM is dropped; undecodable bytes make the row bad). Lines end at LF or CRLF; a bare CR
is not a line end, so a row holding one is bad. A line longer than MAX_LINE_CHARS stops the read with an error.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
import select
import time
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np

from .errors import UserError
from .stream import Chunk

FORMATS = ("csv", "jsonl")
MAX_LINE_CHARS = 1 << 20  # a longer line is not a row of samples; refusing it keeps memory bounded
MAX_ABS_VALUE = 1e15  # larger sample values overflow float32 in preprocessing, training statistics or the model
MAX_TIME = 253402300800.0  # seconds: the end of year 9999, the latest time ISO-8601 can write


@dataclass(frozen=True)
class Gap:
    """Yielded by `live_lines` in place of a line: rows were lost or cannot be read (`problem`); no window spans
    it. `restart`: the file was truncated and is read again from its start, so line numbers start again."""

    problem: str
    restart: bool = False


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


def live_lines(stream: BinaryIO, name: str, follow: bool = False, poll_s: float = 0.1,
               idle_timeout: float | None = None) -> Iterator[str | Gap | None]:
    """Lines of a file, a pipe or a growing file as they arrive, without their line end. Yields None whenever no
    new data came for `poll_s` (so the caller can act on what it has).

    A file or pipe ends at EOF, where a last line without a line end still counts. With `follow`, EOF means "wait
    for more": only complete lines are passed on, a file that shrinks (copytruncate) is read again from its start,
    and the stream ends after `idle_timeout` seconds without data (never, when None), an unfinished last line
    then being a Gap."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError):  # an in-memory stream
        fd = None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    n_lines = 0
    idle_since = time.monotonic()
    while True:
        if fd is not None and not follow:
            ready, _, _ = select.select([fd], [], [], poll_s)
            if not ready:
                yield None
                continue
        data = os.read(fd, 1 << 16) if fd is not None else stream.read(1 << 16)
        if data:
            idle_since = time.monotonic()
            pending += decoder.decode(data)
            *lines, pending = pending.split("\n")
            for line in lines:
                n_lines += 1
                yield line.removesuffix("\r")
            if len(pending) > MAX_LINE_CHARS:
                raise UserError(f"{name}:{n_lines + 1}: line longer than {MAX_LINE_CHARS} characters; "
                                "not a stream of CSV or JSON-lines rows")
            continue
        if not follow:  # EOF of a file or pipe
            break
        if os.fstat(fd).st_size < os.lseek(fd, 0, os.SEEK_CUR):
            os.lseek(fd, 0, os.SEEK_SET)
            decoder.reset()
            pending, n_lines = "", 0
            yield Gap("the file shrank (truncated by log rotation?); reading it again from its start", restart=True)
            continue
        if idle_timeout is not None and time.monotonic() - idle_since > idle_timeout:
            if pending:
                yield Gap(f"unfinished last line (no line end within --idle-timeout {idle_timeout} s)")
            return
        yield None
        time.sleep(poll_s)
    if pending:
        yield pending.removesuffix("\r")


def _number(value) -> float:
    """A JSON or Parquet cell as a float; booleans are not numbers here."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a sample value")
    return float(value)


class _Rows:
    """Turns parsed records into validated samples; shared by the CSV and JSON-lines readers."""

    def __init__(self, name, channels, sampling_rate, strict, stats, on_bad):
        self.name, self.channels, self.rate = name, channels, sampling_rate
        self.strict, self.stats, self.on_bad = strict, stats, on_bad
        self.last_t = -math.inf
        self.n = 0

    def warn(self, msg: str) -> None:
        if self.on_bad is not None:
            self.on_bad(msg)

    def bad(self, lineno: int, problem: str) -> None:
        msg = f"{self.name}:{lineno}: bad row: {problem}"
        if self.strict:
            raise UserError(msg)
        self.stats.bad_rows += 1
        self.warn(msg)

    def sample(self, lineno: int, read, problem: str) -> tuple[float, list[float]] | None:
        """(time, values) from `read()` -> (values, time or None) if the row is good; else report `problem` (or
        what `check` finds) and return None."""
        try:
            vals, t = read()
        except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer too large for a float
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
        if not all(abs(v) <= MAX_ABS_VALUE for v in vals):
            self.bad(lineno, f"value beyond ±{MAX_ABS_VALUE:g}")
            return None
        if abs(t) > MAX_TIME:  # an outlier, not a time: taking it would make every later row "go backwards"
            self.bad(lineno, f"time {t:g} beyond year 9999")
            return None
        if t < self.last_t:
            self.bad(lineno, f"time goes backwards ({t} after {self.last_t})")
            return None
        self.last_t = t
        self.n += 1
        return t


def _numbered(lines: Iterable[str | Gap | None], rows: _Rows) -> Iterator[tuple[int, str] | bool | None]:
    """(line number, text) of each non-blank line; None (no more data for now) is passed on, a Gap reported and
    passed on as False (a new segment)."""
    lineno = 0
    for line in lines:
        if line is None:
            yield None
            continue
        if isinstance(line, Gap):
            if line.restart:
                lineno = 0
                rows.warn(f"{rows.name}: {line.problem}")
            else:
                lineno += 1
                rows.stats.rows += 1
                rows.bad(lineno, line.problem)
            yield False
            continue
        lineno += 1
        if lineno == 1:
            line = line.removeprefix("\ufeff")  # a UTF-8 byte-order mark would hide the first column's name
        if line.strip():
            yield lineno, line


def refuse_repeated_columns(name, header: list[str], columns) -> None:
    """A column the data needs that the header names twice is ambiguous (pandas would rename the second): refuse it."""
    repeated = sorted({c for c in columns if c and header.count(c) > 1})
    if repeated:
        raise UserError(f"{name}: column name(s) {', '.join(map(repr, repeated))} appear more than once")


def separator_hint(header: list[str]) -> str:
    """Why a CSV header's columns were not found, when it is one field holding another separator: a spreadsheet's
    export with semicolons (and often decimal commas) or tabs."""
    for sep, name in ((";", "semicolons"), ("\t", "tabs")):
        if len(header) == 1 and sep in header[0]:
            return f" (its header is separated by {name}: edgekit reads comma-separated files with decimal points)"
    if any("\x00" in h or "\ufffd" in h for h in header):
        return " (the file is not UTF-8 text: UTF-16, or not text at all?)"
    return ""


def _csv_records(lines, rows: _Rows, time_column, label_column, class_index):
    numbered = _numbered(lines, rows)
    header_lineno, header_line = next((item for item in numbered if isinstance(item, tuple)), (0, None))
    if header_line is None:
        raise UserError(f"{rows.name}: empty input, expected a header row with columns {', '.join(rows.channels)}")
    try:
        header = [h.strip() for h in next(csv.reader([header_line]))]
    except csv.Error as e:
        raise UserError(f"{rows.name}:{header_lineno}: unreadable CSV header ({e})") from None
    refuse_repeated_columns(rows.name, header, (*rows.channels, time_column, label_column))
    missing = [c for c in rows.channels if c not in header]
    if missing:
        raise UserError(f"{rows.name}: missing channel column(s) {', '.join(missing)}; "
                        f"the model needs {', '.join(rows.channels)}" + separator_hint(header))
    cols = [header.index(c) for c in rows.channels]
    tcol = header.index(time_column) if time_column in header else None
    if label_column is not None and label_column not in header:
        raise UserError(f"{rows.name}: no label column {label_column!r}")
    lcol = header.index(label_column) if label_column is not None else None
    for item in numbered:
        if not isinstance(item, tuple):
            yield item
            continue
        lineno, line = item
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


def _jsonl_records(lines, rows: _Rows, time_column, label_column, class_index):
    first_object = True
    for item in _numbered(lines, rows):
        if not isinstance(item, tuple):
            yield item
            continue
        lineno, line = item
        rows.stats.rows += 1
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):  # ValueError: not JSON, or an integer of over 4300 digits
            rows.bad(lineno, "not valid JSON (or nested too deeply, or a number too long)")
            yield False
            continue
        if not isinstance(obj, dict):
            rows.bad(lineno, "expected a JSON object")
            yield False
            continue
        missing = [c for c in rows.channels if c not in obj]
        if missing and first_object:  # as a CSV header must name every channel, so must the first object
            raise UserError(f"{rows.name}:{lineno}: missing field(s) {', '.join(missing)} in the first object; "
                            f"the model needs {', '.join(rows.channels)}")
        first_object = False
        if missing:
            rows.bad(lineno, f"missing field(s) {', '.join(missing)}")
            yield False
            continue
        good = rows.sample(lineno, lambda: ([_number(obj[c]) for c in rows.channels],
                                            parse_time(obj[time_column]) if time_column in obj else None),
                           "non-numeric value")
        if good is None:
            yield False
            continue
        yield *good, class_index.get(str(obj.get(label_column, "")), -1) if label_column is not None else None


def read_chunks(
    lines: Iterable[str | Gap | None],
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

    `lines` (text lines, as from `live_lines`) may yield None for "no more data for now": what has been read is
    then passed on at once, and Gaps, which end the segment. `fmt`
    None detects the format from the first line. With `label_column`, each sample's label is read too, as an
    index into `classes` (-1 when not in it)."""
    stats = stats if stats is not None else ReadStats()
    lines = iter(lines)
    if fmt is None:
        head = []
        for ln in lines:
            head.append(ln)
            if isinstance(ln, str) and ln.strip():
                break
        fmt = "jsonl" if head and isinstance(head[-1], str) and head[-1].lstrip("\ufeff \t").startswith("{") else "csv"
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
        raise UserError(f"{path}: missing channel column(s) {', '.join(missing)}; "
                        f"the model needs {', '.join(channels)}")
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
                good = rows.sample(rowno, lambda: ([_number(cols[c][i]) for c in channels],
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
