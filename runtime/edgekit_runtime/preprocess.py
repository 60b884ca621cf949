"""Preprocessing shared by training (compile side) and inference (board side).

There is one implementation of every step: the compile side imports these functions to prepare its training
windows, so the board computes exactly what the model was trained on. The steps, in order:

  signal level (a continuous recording, chunk by chunk; see stream.StreamPreprocessor):
    resample to the nominal rate (resample.py) -> IIR filter (iir.py) -> sliding windows
  window level (`transform_windows`): detrend -> per-channel normalisation

Normalisation: "stored" subtracts and divides by the training data's per-channel mean and std; "window" centres and
scales each window by its own; "window_scale" does the same and then adds, per channel, the window's log standard
deviation standardised by the training windows' (stored as `mean`/`std`) as a constant offset. Where the windows'
scales span orders of magnitude, "window" makes them comparable but throws the scale away, and the scale can be
the class (an appliance's current: a kettle's against a phone charger's); a window-normalised channel has mean
zero, so the offset carries the scale unambiguously, at no cost in model size or compute.

`prepare_windows` takes windows that are whole cases cut before preprocessing (the bundled benchmarks) and
filters each one from its own first sample, as the streaming path filters a recording, before the window-level
steps. The compile side cuts users' recordings with the streaming path itself (edgekit.data.load_table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .iir import IIRFilter

NORMALIZE_MODES = ("stored", "window", "window_scale", "none")
DETREND_MODES = ("none", "constant", "linear")
_EPS = 1e-8


# The window-level steps are numpy, so that a bundle that neither filters nor resamples runs without importing
# numba (kernels.py) at all: 0.6 s and 130 MB less per process. They give the numba kernels' results bit for bit
# (sums and scales in float64, stored as float32) at a few microseconds more per window (one 6×100 window:
# 6-12 µs against 2), small next to the model's ~40 µs.

def _normalize_stored(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    inv = 1.0 / (std.astype(np.float64) + _EPS)
    return ((x - mean[:, None]) * inv[:, None]).astype(np.float32)


def _normalize_window(x: np.ndarray, scale_mean: np.ndarray | None = None,
                      scale_std: np.ndarray | None = None) -> np.ndarray:
    """Each window and channel centred and scaled by its own; with the scale statistics ("window_scale"), plus the
    standardised log scale."""
    centred, sd = _centred(x)
    out = centred * (1.0 / (sd + _EPS))
    if scale_mean is not None:
        out += (np.log(sd + _EPS) - scale_mean[:, None]) / (scale_std[:, None] + _EPS)
    return out.astype(np.float32)


def _centred(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each window and channel less its mean, and its standard deviation (float64, `[N, C, 1]`)."""
    x64 = x.astype(np.float64)
    centred = x64 - x64.mean(axis=2, keepdims=True)
    return centred, np.sqrt((centred * centred).mean(axis=2, keepdims=True))


def window_log_scale(x: np.ndarray) -> np.ndarray:
    """`[N, C, T]` -> `[N, C]`: the log of each window's per-channel standard deviation, as "window_scale" takes it
    (training fits the offset's statistics with this)."""
    return np.log(_centred(x)[1][:, :, 0] + _EPS)


def _detrend(x: np.ndarray, linear: bool) -> np.ndarray:
    """Each channel less its mean (or least-squares line) over the window."""
    x64 = x.astype(np.float64)
    x64 -= x64.mean(axis=2, keepdims=True)
    k = np.arange(x.shape[2]) - (x.shape[2] - 1) / 2.0
    if linear and k @ k > 0:
        x64 -= (x64 @ k / (k @ k))[..., None] * k
    return x64.astype(np.float32)


def sliding_windows(samples: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Cut a `[S, C]` sample stream into `[N, C, window]` windows starting at 0, stride, 2*stride, ..."""
    s, c = samples.shape
    if s < window:
        return np.empty((0, c, window), dtype=samples.dtype)
    return np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(samples, window, axis=0)[::stride])


def window_labels(sample_labels: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Label each window with the most frequent label among its samples (ties go to the lower index).

    Labels are class indices; -1 marks a label outside the class set and counts like any other label."""
    k = int(sample_labels.max()) + 2 if len(sample_labels) else 1
    one_hot = np.eye(k, dtype=np.float32)[sample_labels + 1]  # column 0 counts unknown labels
    counts = sliding_windows(np.ascontiguousarray(one_hot), window, stride).sum(axis=2)
    return (counts.argmax(axis=1) - 1).astype(np.int64)


@dataclass(frozen=True)
class Preprocessing:
    """What `preprocess.json` says about turning raw samples into model input."""

    channels: tuple[str, ...]
    sampling_rate: float
    window: int
    stride: int
    normalize: str = "stored"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    detrend: str = "none"
    filter: IIRFilter | None = None
    max_gap: float | None = None  # seconds; None: samples are taken as already on the nominal grid

    def __post_init__(self):
        if self.normalize not in NORMALIZE_MODES:
            raise UserError(f"unknown normalize mode {self.normalize!r}; allowed: {', '.join(NORMALIZE_MODES)}")
        if self.detrend not in DETREND_MODES:
            raise UserError(f"unknown detrend mode {self.detrend!r}; allowed: {', '.join(DETREND_MODES)}")
        if not self.sampling_rate > 0:
            raise UserError(f"sampling_rate must be positive, got {self.sampling_rate}")
        if self.max_gap is not None and not self.max_gap >= 1.0 / self.sampling_rate:
            raise UserError(f"max_gap must be at least one sample period ({1.0 / self.sampling_rate:g} s), "
                            f"got {self.max_gap}")
        if self.window < 1 or self.stride < 1:
            raise UserError(f"window and stride must be positive, got window={self.window}, stride={self.stride}")
        if self.normalize in ("stored", "window_scale"):
            n = len(self.channels)
            if self.mean is None or self.std is None or len(self.mean) != n or len(self.std) != n:
                raise UserError(f"normalize {self.normalize!r} needs mean and std with one value per channel ({n})")

    def _check(self, windows: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(windows, dtype=np.float32)
        if x.ndim != 3 or x.shape[1] != len(self.channels):
            raise UserError(f"expected windows shaped [N, {len(self.channels)}, T], got {list(x.shape)}")
        return x

    def prepare_windows(self, windows: np.ndarray) -> np.ndarray:
        """Raw `[N, C, T]` windows cut before preprocessing -> model input (float32): each window filtered
        on its own, then the window-level steps."""
        x = self._check(windows)
        if self.filter is not None:
            x = self.filter.apply_windows(x)
        return self.transform_windows(x)

    def transform_windows(self, windows: np.ndarray) -> np.ndarray:
        """The window-level steps (detrend, normalise) on `[N, C, T]` windows of an already filtered signal."""
        x = self._check(windows)
        if self.detrend != "none":
            x = _detrend(x, self.detrend == "linear")
        if self.normalize == "stored":
            return _normalize_stored(x, np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32))
        if self.normalize == "window":
            return _normalize_window(x)
        if self.normalize == "window_scale":
            return _normalize_window(x, np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64))
        return x

    def to_json(self) -> dict:
        out = {
            "channels": list(self.channels),
            "sampling_rate": self.sampling_rate,
            "window": self.window,
            "stride": self.stride,
            "normalize": self.normalize,
        }
        if self.normalize in ("stored", "window_scale"):
            out["mean"] = list(self.mean)
            out["std"] = list(self.std)
        # Only written when used, so a model without them keeps the preprocess.json older runtimes read.
        if self.detrend != "none":
            out["detrend"] = self.detrend
        if self.filter is not None:
            out["filter"] = self.filter.to_json()
        if self.max_gap is not None:
            out["resample"] = {"max_gap_s": self.max_gap}
        return out

    @classmethod
    def from_json(cls, d: dict) -> "Preprocessing":
        try:
            return cls(
                channels=tuple(str(c) for c in d["channels"]),
                sampling_rate=float(d["sampling_rate"]),
                window=int(d["window"]),
                stride=int(d["stride"]),
                normalize=str(d.get("normalize", "stored")),
                mean=tuple(float(v) for v in d["mean"]) if d.get("mean") is not None else None,
                std=tuple(float(v) for v in d["std"]) if d.get("std") is not None else None,
                detrend=str(d.get("detrend", "none")),
                filter=IIRFilter.from_json(d["filter"]) if d.get("filter") is not None else None,
                max_gap=float(d["resample"]["max_gap_s"]) if d.get("resample") is not None else None,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"invalid preprocessing settings: {type(e).__name__}: {e}") from None
