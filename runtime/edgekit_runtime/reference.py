"""Plain-numpy preprocessing: the reference `edgekit bench` times the numba kernels against, and checks they
agree with. Same steps and same order as stream.StreamPreprocessor on a whole recording; no state across calls.
"""

from __future__ import annotations

import numpy as np

from .preprocess import Preprocessing


def _sosfilt(x: np.ndarray, sos: np.ndarray, zi: np.ndarray) -> np.ndarray:
    """Transposed direct form II, vectorised over channels (numpy has no recursive filter)."""
    z = zi[:, None, :] * x[0][None, :, None]
    out = np.empty_like(x)
    for s in range(len(x)):
        v = x[s]
        for j, (b0, b1, b2, _, a1, a2) in enumerate(sos):
            y = b0 * v + z[j, :, 0]
            z[j, :, 0] = b1 * v - a1 * y + z[j, :, 1]
            z[j, :, 1] = b2 * v - a2 * y
            v = y
        out[s] = v
    return out


def _segments(pre: Preprocessing, times: np.ndarray, values: np.ndarray):
    if pre.max_gap is None:
        yield times, values.astype(np.float64)
        return
    cuts = np.flatnonzero(np.diff(times) > pre.max_gap) + 1
    for t, v in zip(np.split(times, cuts), np.split(values.astype(np.float64), cuts)):
        grid = t[0] + np.arange(int(np.floor((t[-1] - t[0]) * pre.sampling_rate)) + 2) / pre.sampling_rate
        grid = grid[grid <= t[-1]]
        yield grid, np.stack([np.interp(grid, t, v[:, c]) for c in range(v.shape[1])], axis=1)


def process(pre: Preprocessing, times: np.ndarray, values: np.ndarray, stride: int | None = None) -> np.ndarray:
    """Model-ready windows `[N, C, T]` of a whole recording."""
    stride = stride or pre.stride
    out = []
    for _, v in _segments(pre, np.asarray(times, np.float64), values):
        if pre.filter is not None:
            v = _sosfilt(v, pre.filter.sos, pre.filter.zi)
        v = v.astype(np.float32)
        if len(v) >= pre.window:
            out.append(np.lib.stride_tricks.sliding_window_view(v, pre.window, axis=0)[::stride])
    x = np.concatenate(out) if out else np.empty((0, len(pre.channels), pre.window), np.float32)
    if pre.detrend != "none":
        k = np.arange(pre.window) - (pre.window - 1) / 2
        x = x - x.mean(axis=2, keepdims=True)
        if pre.detrend == "linear":
            x = x - (x @ k / (k @ k))[..., None] * k
    if pre.normalize == "stored":
        x = (x - np.asarray(pre.mean, np.float32)[:, None]) / (np.asarray(pre.std, np.float32)[:, None] + 1e-8)
    elif pre.normalize in ("window", "window_scale"):
        sd = x.std(axis=2, keepdims=True)
        x = (x - x.mean(axis=2, keepdims=True)) / (sd + 1e-8)
        if pre.normalize == "window_scale":
            x = x + (np.log(sd + 1e-8) - np.asarray(pre.mean)[:, None]) / (np.asarray(pre.std)[:, None] + 1e-8)
    return x.astype(np.float32)
