"""The general teacher's pretraining corpus: real unlabelled windows that installed packages ship.

Only training splits of labelled benchmarks are used (their test splits are what users and our benchmarks
measure on), plus long recordings cut into windows. Every source is normalised as `edgekit train` would normalise
it (`fit_preprocessing`, "auto"), then seen channel by channel. `manifest()` lists each source's origin, shape and
a sha256 of its windows, so a rebuilt corpus can be compared byte for byte with the one the shipped teacher saw.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..data import WindowSet, load_dataset
from ..data.windows import cut_windows

RECORDING_WINDOW, RECORDING_STRIDE = 256, 128


@dataclass(frozen=True)
class Source:
    name: str
    origin: str  # where the samples come from, for the manifest
    load: Callable[[], WindowSet]


def _train_split(name: str) -> Callable[[], WindowSet]:
    def load():
        ds = load_dataset(name)
        return ds.subset(np.flatnonzero(ds.groups == "train"))
    return load


def _aeon_train(loader: str, name: str) -> Callable[[], WindowSet]:
    def load():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import aeon.datasets

            x, _ = getattr(aeon.datasets, loader)(split="train")
        x = np.asarray(x, np.float32)
        return WindowSet(x, None, tuple(f"ch{i}" for i in range(x.shape[1])), (), 1.0, name=name)
    return load


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    return Path(next(iter(spec.submodule_search_locations))) / relative


def _recording(package: str, relative: str, column: str, rate: float, name: str) -> Callable[[], WindowSet]:
    def load():
        import csv

        with open(_package_file(package, relative), newline="") as f:
            samples = np.array([[float(row[column])] for row in csv.DictReader(f)], np.float32)
        values = cut_windows(samples, RECORDING_WINDOW, RECORDING_STRIDE, name)
        return WindowSet(values, None, (column,), (), rate, name=name)
    return load


SOURCES = (
    Source("BasicMotions", "aeon: BasicMotions TRAIN", _train_split("BasicMotions")),
    Source("JapaneseVowels", "aeon: JapaneseVowels TRAIN", _train_split("JapaneseVowels")),
    Source("ACSF1", "aeon: ACSF1 TRAIN", _train_split("ACSF1")),
    Source("GunPoint", "aeon: GunPoint TRAIN", _train_split("GunPoint")),
    Source("PLAID", "sktime: PLAID TRAIN", _train_split("PLAID")),
    Source("ArrowHead", "aeon: ArrowHead TRAIN", _aeon_train("load_arrow_head", "ArrowHead")),
    Source("ItalyPowerDemand", "aeon: ItalyPowerDemand TRAIN", _aeon_train("load_italy_power_demand",
                                                                          "ItalyPowerDemand")),
    Source("OSULeaf", "aeon: OSULeaf TRAIN", _aeon_train("load_osuleaf", "OSULeaf")),
    Source("Daphnet", "aeon: Daphnet S06R02E0 recording, 256-sample windows, stride 128",
           lambda: load_dataset("Daphnet", window=RECORDING_WINDOW, stride=RECORDING_STRIDE)),
    Source("InternalBleeding16", "aeon: KDD-TSAD 135 InternalBleeding16 TRAIN recording, 256-sample windows",
           _recording("aeon", "datasets/data/KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_TRAIN.csv", "value",
                      1.0, "InternalBleeding16")),
    Source("mitdb", "sktime: MIT-BIH ECG excerpt recording, 256-sample windows",
           _recording("sktime", "datasets/data/mitdb/mitdb.csv", "data", 360.0, "mitdb")),
)


def load_corpus() -> list[WindowSet]:
    """Every source's windows (sources whose package is missing raise the loader's clear error)."""
    return [s.load() for s in SOURCES]


def windows_sha256(ds: WindowSet) -> str:
    return hashlib.sha256(np.ascontiguousarray(ds.values, np.float32).tobytes()).hexdigest()


def manifest(sets: list[WindowSet]) -> list[dict]:
    return [{"name": s.name, "origin": s.origin, "windows": len(ds), "channels": ds.n_channels,
             "length": ds.length, "sha256": windows_sha256(ds)} for s, ds in zip(SOURCES, sets)]
