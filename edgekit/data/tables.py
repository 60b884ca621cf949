"""Users' own recordings: CSV or Parquet files with a time column, channel columns, an optional label column and
optional per-channel uncertainty columns, cut into windows. Every file problem is one clear error that names the
file, the row and the column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from edgekit_runtime.errors import UserError
from edgekit_runtime.iir import IIRFilter
from edgekit_runtime.preprocess import Preprocessing, window_labels
from edgekit_runtime.readers import MAX_ABS_VALUE, refuse_repeated_columns, separator_hint
from edgekit_runtime.stream import process_recording

from .windows import WindowSet, cut_windows

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def _read(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".csv":
            options = dict(dtype=str, keep_default_na=False, skipinitialspace=True)
            # pandas renames a repeated column ("a", "a.1"); the board's reader would not find "a.1"
            header = pd.read_csv(path, header=None, nrows=1, **options).iloc[0].str.strip().tolist()
            refuse_repeated_columns(path, header, header)
            return pd.read_csv(path, **options)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: empty file") from None
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise UserError(f"{path}: cannot read as {path.suffix[1:].upper()} ({str(e).splitlines()[0]})") from None


def _row(path: Path, i: int) -> str:
    # CSV: the line number in the file (header is line 1); Parquet: the 0-based row index.
    return f"line {i + 2}" if path.suffix.lower() == ".csv" else f"row {i}"


def _numeric(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    raw = df[col]
    num = pd.to_numeric(raw, errors="coerce")
    bad = num.isna() & ~raw.astype(str).str.strip().str.lower().isin(["nan", "", "none", "null"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{path}: {_row(path, i)}, column {col!r}: non-numeric value {raw.iloc[i]!r}")
    arr = num.to_numpy(dtype=np.float64)
    nonfinite = ~np.isfinite(arr)
    if nonfinite.any():
        i = int(np.flatnonzero(nonfinite)[0])
        raise UserError(f"{path}: {_row(path, i)}, column {col!r}: missing, NaN or infinite value")
    huge = np.abs(arr) > MAX_ABS_VALUE  # as `edgekit run` does: larger values overflow the float32 statistics
    if huge.any():
        i = int(np.flatnonzero(huge)[0])
        raise UserError(f"{path}: {_row(path, i)}, column {col!r}: value {arr[i]:g} beyond ±{MAX_ABS_VALUE:g}")
    return arr


def _times(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    raw = df[col]
    if pd.api.types.is_datetime64_any_dtype(raw):
        dt = raw
    else:
        num = pd.to_numeric(raw, errors="coerce")
        if num.notna().all():
            t = _numeric(df, col, path)
            dt = None
        elif pd.notna(num.iloc[0]):  # a column of seconds: the first value that is none is the bad one
            i = int(np.flatnonzero(num.isna().to_numpy())[0])
            raise UserError(f"{path}: {_row(path, i)}, column {col!r}: not a number of seconds: {raw.iloc[i]!r}")
        else:
            dt = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
            if dt.isna().any():
                i = int(np.flatnonzero(dt.isna().to_numpy())[0])
                raise UserError(f"{path}: {_row(path, i)}, column {col!r}: "
                                f"not a number of seconds or an ISO-8601 time: {raw.iloc[i]!r}")
    if dt is not None:
        t = (dt - pd.Timestamp("1970-01-01", tz="UTC") if dt.dt.tz is not None else dt - pd.Timestamp("1970-01-01"))
        t = t.dt.total_seconds().to_numpy()
    step = np.diff(t)
    if (step <= 0).any():
        i = int(np.flatnonzero(step <= 0)[0]) + 1
        hint = "; a file is one recording: give each its own file" if t[i] < t[i - 1] else ""
        raise UserError(f"{path}: {_row(path, i)}, column {col!r}: time does not increase ({t[i]} after {t[i - 1]})"
                        + hint)
    return t


def _recording_steps(signal: dict | None, channels: list[str], window: int, stride: int) -> Preprocessing | None:
    """The recording-level steps of a signal spec ({"sampling_rate", "filter", "max_gap"}, see
    edgekit.filters.signal_spec) as the runtime's preprocessing, or None when there are none."""
    if not signal or (signal.get("filter") is None and signal.get("max_gap") is None):
        return None
    filt = IIRFilter.from_json(signal["filter"]) if signal.get("filter") is not None else None
    return Preprocessing(tuple(channels), float(signal["sampling_rate"]), window, stride, "none", filter=filt,
                         max_gap=signal.get("max_gap"))


def load_table(
    path: str | Path,
    window: int,
    stride: int,
    time_column: str = "time",
    channels: list[str] | None = None,
    label_column: str | None = None,
    uncertainty_suffix: str | None = None,
    classes: tuple[str, ...] | None = None,
    signal: dict | None = None,
) -> WindowSet:
    """One recording file as windows. `channels` defaults to every column that is not the time, label or an
    uncertainty column. With `uncertainty_suffix` (e.g. "_sigma") every channel needs a column CHANNEL+suffix
    holding the positive standard deviation of that value. With a `signal` spec that resamples or filters, the
    recording goes through the runtime's streaming path (resample, filter, window) whole, so the windows are
    the ones `edgekit run` computes on the same file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise UserError(f"{path}: unsupported file type; expected one of {', '.join(TABLE_SUFFIXES)}")
    df = _read(path)
    if len(df) == 0:
        raise UserError(f"{path}: no data rows")
    df.columns = [str(c).strip() for c in df.columns]
    reserved = {time_column, label_column}
    if channels is None:
        channels = [c for c in df.columns if c not in reserved
                    and not (uncertainty_suffix and c.endswith(uncertainty_suffix))]
    elif reserved & set(channels):
        raise UserError(f"{path}: {', '.join(map(repr, sorted(reserved & set(channels))))} is the time or label "
                        "column, not a channel")
    needed = [time_column, *channels]
    if label_column:
        needed.append(label_column)
    if uncertainty_suffix:
        needed += [c + uncertainty_suffix for c in channels]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(map(repr, missing))}; found {', '.join(df.columns)}"
                        + separator_hint(list(df.columns)))
    if not channels:
        raise UserError(f"{path}: no channel columns besides {time_column!r}")

    t = _times(df, time_column, path)
    samples = np.stack([_numeric(df, c, path) for c in channels], axis=1).astype(np.float32)
    sample_labels, class_names = None, tuple(classes or ())
    if label_column:
        raw = df[label_column].astype(str).str.strip()
        if (raw == "").any():
            i = int(np.flatnonzero((raw == "").to_numpy())[0])
            raise UserError(f"{path}: {_row(path, i)}, column {label_column!r}: missing label")
        if classes is None:
            class_names = tuple(sorted(raw.unique()))
        unknown = sorted(set(raw) - set(class_names))
        if unknown:
            raise UserError(f"{path}: column {label_column!r}: labels {unknown} "
                            f"not in the class set {list(class_names)}")
        index = {c: k for k, c in enumerate(class_names)}
        sample_labels = raw.map(index).to_numpy(np.int64)
    steps = _recording_steps(signal, channels, window, stride)
    if steps is None:
        values = cut_windows(samples, window, stride, str(path))
        labels = None if sample_labels is None else window_labels(sample_labels, window, stride)
    else:  # the windows `edgekit run` cuts from this recording
        cut_windows(samples[:window], window, stride, str(path))  # a recording shorter than a window: say so
        ends, values, labels = process_recording(steps, t, samples, sample_labels, stride)
        if len(values) == 0:
            raise UserError(f"{path}: no stretch of {window} samples without a gap longer than "
                            f"{steps.max_gap:g} s after resampling to {steps.sampling_rate:g} Hz")
    if steps is not None and steps.max_gap is not None:  # on the resampled grid
        timestamps = ends[:, None] - (window - 1 - np.arange(window))[None, :] / steps.sampling_rate
    else:
        timestamps = cut_windows(t[:, None], window, stride, str(path))[:, 0, :]
    uncertainty = None
    if uncertainty_suffix:
        if steps is not None and steps.max_gap is not None:
            raise UserError(f"{path}: uncertainty columns cannot be resampled; drop --max-gap or "
                            "--uncertainty-suffix")
        sigma = np.stack([_numeric(df, c + uncertainty_suffix, path) for c in channels], axis=1)
        if (sigma <= 0).any():
            i, j = np.argwhere(sigma <= 0)[0]
            raise UserError(f"{path}: {_row(path, int(i))}, column {channels[j] + uncertainty_suffix!r}: "
                            f"uncertainty must be positive, got {sigma[i, j]}")
        uncertainty = cut_windows(sigma.astype(np.float32), window, stride, str(path))
    rate = float(1.0 / np.median(np.diff(t))) if len(t) > 1 else 1.0
    if steps is not None and steps.max_gap is not None:
        rate = steps.sampling_rate
    groups = np.array([path.name] * len(values))
    return WindowSet(values, labels, tuple(channels), class_names, rate, timestamps=timestamps,
                     uncertainty=uncertainty, groups=groups, name=path.name, filtered=steps is not None)


def load_tables(paths: list[Path], **options) -> WindowSet:
    """Several recording files as one WindowSet (one group per file); all must have the same channels."""
    if not paths:
        raise UserError("no CSV or Parquet files given")
    sets = [load_table(p, **options) for p in paths]
    first = sets[0]
    for p, s in zip(paths[1:], sets[1:]):
        if s.channel_names != first.channel_names:
            raise UserError(f"{p}: channels {list(s.channel_names)} differ from {paths[0]}: "
                            f"{list(first.channel_names)}")
    if len(sets) == 1:
        return first
    labels, class_names = None, first.class_names
    if first.labels is not None:
        # Files may each see only some classes: map every file's labels into the union of class names.
        class_names = tuple(sorted(set().union(*(s.class_names for s in sets))))
        index = {c: k for k, c in enumerate(class_names)}
        labels = np.concatenate([np.array([index[c] for c in s.class_names], np.int64)[s.labels] for s in sets])
    cat = lambda key: None if getattr(first, key) is None else np.concatenate([getattr(s, key)  # noqa: E731
                                                                                for s in sets])
    return WindowSet(cat("values"), labels, first.channel_names, class_names,
                     float(np.median([s.sampling_rate for s in sets])), timestamps=cat("timestamps"),
                     uncertainty=cat("uncertainty"), groups=cat("groups"), name=str(paths[0].parent),
                     filtered=first.filtered)
