"""Real datasets that ship inside aeon, loaded through aeon's own loaders.

UCR/UEA sets keep the library's train/test split as `groups` ("train"/"test"), so a grouped split reproduces the
published benchmark split. JapaneseVowels has utterances of 7-29 frames: they are padded at the end to 29 frames
by repeating the last frame, and `mask` marks the padding (resampling would stretch the formant trajectories).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgekit_runtime.errors import UserError
from edgekit_runtime.preprocess import window_labels

from .windows import WindowSet, cut_windows


def _aeon():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import aeon.datasets

    return aeon.datasets


def _load_split(loader_name: str, split: str):
    with warnings.catch_warnings():  # ACSF1 and Daphnet loaders warn that aeon 1.7 drops them; we pin aeon<1.7
        warnings.simplefilter("ignore", FutureWarning)
        return getattr(_aeon(), loader_name)(split=split)


def _encode(y_train, y_test) -> tuple[np.ndarray, tuple[str, ...]]:
    y = np.concatenate([np.asarray(y_train).astype(str), np.asarray(y_test).astype(str)])
    classes, labels = np.unique(y, return_inverse=True)
    return labels.astype(np.int64), tuple(str(c) for c in classes)


def _ucr(name: str, loader_name: str, channel_names: tuple[str, ...], rate: float) -> WindowSet:
    x_tr, y_tr = _load_split(loader_name, "train")
    x_te, y_te = _load_split(loader_name, "test")
    labels, classes = _encode(y_tr, y_te)
    values = np.concatenate([x_tr, x_te]).astype(np.float32)
    groups = np.array(["train"] * len(x_tr) + ["test"] * len(x_te))
    return WindowSet(values, labels, channel_names, classes, rate, groups=groups, name=name)


def _pad_to(series: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    c = series[0].shape[0]
    values = np.empty((len(series), c, length), np.float32)
    mask = np.zeros((len(series), length), bool)
    for i, s in enumerate(series):
        n = s.shape[1]
        values[i, :, :n] = s
        values[i, :, n:] = s[:, -1:]
        mask[i, :n] = True
    return values, mask


def load_japanese_vowels() -> WindowSet:
    x_tr, y_tr = _load_split("load_japanese_vowels", "train")
    x_te, y_te = _load_split("load_japanese_vowels", "test")
    series = list(x_tr) + list(x_te)
    values, mask = _pad_to(series, max(s.shape[1] for s in series))
    labels, classes = _encode(y_tr, y_te)
    groups = np.array(["train"] * len(x_tr) + ["test"] * len(x_te))
    channels = tuple(f"lpc_{i + 1}" for i in range(values.shape[1]))
    # 12-degree LPC analysis with a 6.4 ms frame shift (Kudo et al. 1999): 156.25 frames per second.
    return WindowSet(values, labels, channels, classes, 156.25, mask=mask, groups=groups, name="JapaneseVowels")


def load_plaid() -> WindowSet:
    """PLAID (UCR version, as sktime ships it): one current waveform per appliance measurement, 11 appliance types,
    100-1344 samples at 30 kHz. Like JapaneseVowels, cases are padded at the end by repeating the last sample,
    with a mask. sktime only carries the files (the `bench` extra); they are read with aeon's .ts reader."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("PLAID ships with sktime: pip install 'edgekit[bench]' (or sktime) to use it")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "PLAID"
    split = {}
    for name in ("train", "test"):
        x, y = _aeon().load_from_ts_file(str(folder / f"PLAID_{name.upper()}.ts"))
        split[name] = ([np.asarray(s, np.float32) for s in x], y)
    series = split["train"][0] + split["test"][0]
    values, mask = _pad_to(series, max(s.shape[1] for s in series))
    labels, classes = _encode(split["train"][1], split["test"][1])
    groups = np.array(["train"] * len(split["train"][0]) + ["test"] * len(split["test"][0]))
    return WindowSet(values, labels, ("current",), classes, 30_000.0, mask=mask, groups=groups, name="PLAID")


DAPHNET_CHANNELS = tuple(f"{part}_{axis}" for part in ("ankle", "leg", "trunk")
                         for axis in ("horiz_fwd", "vert", "horiz_lateral"))
DAPHNET_RATE = 64.0  # the recording's timestamps advance by 15.625 ms
DAPHNET_PARTS = 4


def load_daphnet(window: int = 256, stride: int = 128) -> WindowSet:
    """The Daphnet S06R02E0 recording (9-channel accelerometer at 64 Hz) cut into windows.

    A window is labelled "freeze" when most of its samples are annotated as freeze of gait. The excerpt shipped
    with aeon contains no freeze episode, so every window is "normal": use it as unlabelled pretraining data.
    `groups` splits the recording into four contiguous parts, so a grouped split never tests on windows that
    overlap training windows.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        x, y = _aeon().load_daphnet_s06r02e0()
    samples = x.astype(np.float32)
    values = cut_windows(samples, window, stride, "Daphnet S06R02E0")
    labels = window_labels(np.asarray(y, np.int64), window, stride)
    starts = np.arange(len(values)) * stride
    timestamps = (starts[:, None] + np.arange(window)[None, :]) / DAPHNET_RATE
    part = np.minimum(starts * DAPHNET_PARTS // len(samples), DAPHNET_PARTS - 1)
    groups = np.array([f"part{p}" for p in part])
    return WindowSet(values, labels, DAPHNET_CHANNELS, ("normal", "freeze"), DAPHNET_RATE,
                     timestamps=timestamps, groups=groups, name="Daphnet")


@dataclass(frozen=True)
class Bundled:
    load: Callable[..., WindowSet]
    description: str
    windowed: bool = False  # accepts window/stride options


BUNDLED: dict[str, Bundled] = {
    "BasicMotions": Bundled(
        lambda: _ucr("BasicMotions", "load_basic_motions",
                     ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"), 10.0),
        "smartwatch accelerometer + gyroscope, 4 activities, 10 Hz"),
    "JapaneseVowels": Bundled(load_japanese_vowels, "12 LPC coefficients per frame, 9 speakers, 7-29 frames (padded)"),
    "ACSF1": Bundled(
        lambda: _ucr("ACSF1", "load_acsf1", ("power",), 0.1),
        "appliance power consumption, 10 appliance types, one sample per 10 s"),
    "GunPoint": Bundled(
        lambda: _ucr("GunPoint", "load_gunpoint", ("hand_x",), 30.0),
        "hand x-position from video, gun-draw vs point, 30 Hz"),
    "PLAID": Bundled(load_plaid, "appliance current waveforms, 11 appliance types, 100-1344 samples at 30 kHz "
                                 "(padded; needs the bench extra)"),
    "Daphnet": Bundled(load_daphnet, "S06R02E0 recording: 9-channel gait accelerometer, 64 Hz, windowed",
                       windowed=True),
}


def bundled_name(name: str) -> str | None:
    """The canonical name of a bundled dataset, matched case-insensitively (None when not bundled)."""
    by_lower = {k.lower(): k for k in BUNDLED}
    return by_lower.get(name.lower())


def load_bundled(name: str, window: int | None = None, stride: int | None = None) -> WindowSet:
    key = bundled_name(name)
    if key is None:
        raise UserError(f"unknown dataset {name!r}; bundled datasets: {', '.join(BUNDLED)} "
                        "(or give a CSV/Parquet path)")
    entry = BUNDLED[key]
    if entry.windowed:
        kwargs = {k: v for k, v in (("window", window), ("stride", stride)) if v is not None}
        return entry.load(**kwargs)
    if window is not None or stride is not None:
        raise UserError(f"{key} comes as fixed windows; --window/--stride apply to recordings (Daphnet, your files)")
    return entry.load()
