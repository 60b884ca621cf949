"""The data layer: one window type, loaders for bundled and user datasets, and deterministic splits."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit_runtime.errors import UserError

from .bundled import BUNDLED, bundled_name, load_bundled
from .splits import SPLIT_METHODS, split_dataset
from .tables import TABLE_SUFFIXES, load_table, load_tables
from .windows import WindowSet, model_inputs

if TYPE_CHECKING:
    from ..settings import SplitSettings

__all__ = ["BUNDLED", "SPLIT_METHODS", "WindowSet", "labelled_splits", "load_dataset", "load_spec", "load_table",
           "load_tables", "model_inputs", "resolve_split", "source_digest", "split_dataset", "split_from_spec"]


def load_dataset(name: str, window: int | None = None, stride: int | None = None, signal: dict | None = None,
                 **table_options) -> WindowSet:
    """A bundled dataset by name, or the user's CSV/Parquet file(s): a file path or a directory of them.

    `table_options` go to `load_table` (time_column, channels, label_column, uncertainty_suffix). `signal`
    (recording-level steps, see load_table) applies to recordings; a bundled dataset's cases are each filtered
    on their own when they are prepared (data.model_inputs).
    """
    if bundled_name(name) is not None:
        if any(v is not None for v in table_options.values()):
            raise UserError(f"{name} is a bundled dataset; column options apply to CSV/Parquet files only")
        return load_bundled(name, window=window, stride=stride)
    path = Path(name)
    if not path.exists():
        raise UserError(f"unknown dataset {name!r}: not bundled ({', '.join(BUNDLED)}) and no such file or directory")
    if window is None:
        raise UserError(f"{name}: --window is required for recordings (samples per window)")
    options = {k: v for k, v in table_options.items() if v is not None}
    options.update(window=window, stride=stride or window, signal=signal)
    if path.is_dir():
        return load_tables(_table_files(path), **options)
    return load_table(path, **options)


def _table_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in TABLE_SUFFIXES)
    if not files:
        raise UserError(f"{path}: no {'/'.join(TABLE_SUFFIXES)} files in this directory")
    return files


def source_digest(name: str) -> str | None:
    """sha256 over the names and bytes of a user dataset's files (None for a bundled dataset): a checkpoint
    records it, and reloading refuses data that changed since (the split would no longer be the one trained
    on)."""
    if bundled_name(name) is not None or not Path(name).exists():
        return None
    digest = hashlib.sha256()
    for f in _table_files(Path(name)):
        digest.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_spec(spec: dict) -> WindowSet:
    """Load what a data spec names: {"dataset", "window", "stride", "time_column", "label_column", "channels",
    "uncertainty_suffix", "signal"} (missing keys mean defaults). Checkpoints record such a spec to reload their
    data, so every stage after training sees the windows training saw; with "source_sha256", data that changed
    since is refused."""
    expected = spec.get("source_sha256")
    if expected is not None and Path(spec["dataset"]).exists() and source_digest(spec["dataset"]) != expected:
        raise UserError(f"{spec['dataset']}: the data changed since the checkpoint was trained (sha256 differs); "
                        "its split and windows would not be the ones it was trained and tested on")
    return load_dataset(spec["dataset"], window=spec.get("window"), stride=spec.get("stride"),
                        signal=spec.get("signal"), time_column=spec.get("time_column"),
                        label_column=spec.get("label_column"), channels=spec.get("channels"),
                        uncertainty_suffix=spec.get("uncertainty_suffix"))


def resolve_split(ds, method: str | None, test_groups: list[str] | None) -> tuple[str, list[str] | None]:
    """The default split: grouped when test groups are named, a bundled benchmark's own train/test split when it
    has one, else random."""
    if method == "random" and test_groups:
        raise UserError("--test-groups names groups to hold out, which --split group does; drop one of them")
    if method is None:
        if test_groups:
            return "group", test_groups
        if ds.groups is not None and set(ds.groups.tolist()) == {"train", "test"}:
            return "group", ["test"]
        return "random", None
    return method, test_groups


def split_from_spec(ds, spec: dict):
    """(train, val, test) of `ds` as a checkpoint's data spec records the split."""
    return split_dataset(ds, spec["split"], seed=spec["seed"], val=spec["val"], test=spec["test"],
                         test_groups=spec.get("test_groups"))


def labelled_splits(spec: dict, split: SplitSettings, seed: int):
    """Load labelled data and split it: (dataset, spec with the split recorded, train, val, test)."""
    ds = load_spec(spec)
    if (digest := source_digest(spec["dataset"])) is not None:
        spec = {**spec, "source_sha256": digest}
    if ds.labels is None:
        raise UserError(f"{ds.name}: no labels to train on (give --label-column for your files)")
    method, test_groups = resolve_split(ds, split.split, split.test_groups)
    test_groups = None if test_groups is None else list(test_groups)
    spec = {**spec, "split": method, "test_groups": test_groups, "seed": seed, "val": split.val, "test": split.test}
    tr, va, te = split_from_spec(ds, spec)
    present = np.unique(tr.labels)
    if len(present) < 2:
        raise UserError(f"{ds.name}: the training split has {len(present)} class(es); classification needs two or more")
    return ds, spec, tr, va, te
