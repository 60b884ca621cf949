"""Preprocessing kernels shared by training (compile side) and inference (board side).

There is one implementation of every step: the compile side imports these functions to prepare its training
windows, so the board computes exactly what the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .errors import UserError

NORMALIZE_MODES = ("stored", "window", "none")
_EPS = 1e-8


@njit(cache=True)
def _normalize_stored(x, mean, std):
    n, c, t = x.shape
    out = np.empty_like(x)
    for i in range(n):
        for j in range(c):
            inv = 1.0 / (std[j] + _EPS)
            for k in range(t):
                out[i, j, k] = (x[i, j, k] - mean[j]) * inv
    return out


@njit(cache=True)
def _normalize_window(x):
    n, c, t = x.shape
    out = np.empty_like(x)
    for i in range(n):
        for j in range(c):
            s = 0.0
            for k in range(t):
                s += x[i, j, k]
            m = s / t
            v = 0.0
            for k in range(t):
                d = x[i, j, k] - m
                v += d * d
            inv = 1.0 / (np.sqrt(v / t) + _EPS)
            for k in range(t):
                out[i, j, k] = (x[i, j, k] - m) * inv
    return out


@njit(cache=True)
def sliding_windows(samples, window, stride):
    """Cut a `[S, C]` sample stream into `[N, C, window]` windows starting at 0, stride, 2*stride, ..."""
    s, c = samples.shape
    n = 0 if s < window else (s - window) // stride + 1
    out = np.empty((n, c, window), dtype=samples.dtype)
    for i in range(n):
        start = i * stride
        for k in range(window):
            for j in range(c):
                out[i, j, k] = samples[start + k, j]
    return out


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

    def __post_init__(self):
        if self.normalize not in NORMALIZE_MODES:
            raise UserError(f"unknown normalize mode {self.normalize!r}; allowed: {', '.join(NORMALIZE_MODES)}")
        if self.window < 1 or self.stride < 1:
            raise UserError(f"window and stride must be positive, got window={self.window}, stride={self.stride}")
        if self.normalize == "stored":
            n = len(self.channels)
            if self.mean is None or self.std is None or len(self.mean) != n or len(self.std) != n:
                raise UserError(f"normalize 'stored' needs mean and std with one value per channel ({n})")

    def normalize_windows(self, windows: np.ndarray) -> np.ndarray:
        """Normalise `[N, C, T]` windows per channel; returns float32."""
        x = np.ascontiguousarray(windows, dtype=np.float32)
        if x.ndim != 3 or x.shape[1] != len(self.channels):
            raise UserError(f"expected windows shaped [N, {len(self.channels)}, T], got {list(x.shape)}")
        if self.normalize == "stored":
            return _normalize_stored(x, np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32))
        if self.normalize == "window":
            return _normalize_window(x)
        return x

    def to_json(self) -> dict:
        out = {
            "channels": list(self.channels),
            "sampling_rate": self.sampling_rate,
            "window": self.window,
            "stride": self.stride,
            "normalize": self.normalize,
        }
        if self.normalize == "stored":
            out["mean"] = list(self.mean)
            out["std"] = list(self.std)
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
            )
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"invalid preprocessing settings: {type(e).__name__}: {e}") from None
