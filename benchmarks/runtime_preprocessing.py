"""The runtime's numba preprocessing against numpy/scipy, side by side in one run, with equality of outputs.

Pipeline: 6 channels at 100 Hz with jittered timestamps, resampled to the grid, band-passed (Butterworth 0.5-20 Hz,
order 4), cut into windows, linearly detrended and normalised with stored statistics. Two shapes:
  - 1 s chunks arriving one at a time (2 s windows, 1 s stride): the numba StreamPreprocessor carrying its state,
    against scipy.signal.sosfilt carrying `zi` plus numpy for the other steps;
  - 30 s windows from a whole recording (batch path).

    python benchmarks/runtime_preprocessing.py
"""

from __future__ import annotations

import time

import numpy as np
import scipy.signal as ss

from edgekit.filters import design_filter
from edgekit_runtime.preprocess import Preprocessing
from edgekit_runtime.stream import Chunk, StreamPreprocessor, process_recording
from results import write

RATE, C = 100.0, 6


def recording(seconds: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    times = np.arange(n) / RATE + rng.uniform(-0.2, 0.2, n) / RATE
    values = (np.sin(2 * np.pi * times[:, None] * np.arange(1, C + 1)) + 0.2 * rng.normal(size=(n, C)) + 3.0)
    return times, values.astype(np.float32)


class ScipyStream:
    """The same steps with scipy/numpy, state carried by hand (filter zi, the last sample, the window buffer)."""

    def __init__(self, pre: Preprocessing):
        self.pre, self.zi, self.buf, self.last, self.t0, self.k = pre, None, None, None, None, 0

    def push(self, times, values):
        pre = self.pre
        v = values.astype(np.float64)
        if self.last is not None:
            times, v = np.r_[self.last[0], times], np.vstack([self.last[1], v])
        else:
            self.t0 = times[0]
        end = int(np.floor((times[-1] - self.t0) * pre.sampling_rate + 1e-9))
        grid = self.t0 + np.arange(self.k, end + 1) / pre.sampling_rate
        self.k = end + 1
        y = np.stack([np.interp(grid, times, v[:, c]) for c in range(C)], axis=1)
        self.last = (times[-1], v[-1])
        if self.zi is None:
            self.zi = pre.filter.zi[:, :, None] * y[0][None, None, :]
        y, self.zi = ss.sosfilt(pre.filter.sos, y, axis=0, zi=self.zi)
        y = y.astype(np.float32)
        self.buf = y if self.buf is None else np.vstack([self.buf, y])
        if len(self.buf) < pre.window:
            return np.empty((0, C, pre.window), np.float32)
        w = np.lib.stride_tricks.sliding_window_view(self.buf, pre.window, axis=0)[:: pre.stride]
        self.buf = self.buf[len(w) * pre.stride :]
        w = ss.detrend(w, axis=2, type="linear")
        return ((w - np.asarray(pre.mean)[:, None]) / (np.asarray(pre.std)[:, None] + 1e-8)).astype(np.float32)


def scipy_batch(pre: Preprocessing, times, values):
    return ScipyStream(pre).push(times, values)


def preprocessing(window_s: float, stride_s: float) -> Preprocessing:
    return Preprocessing(tuple(f"c{i}" for i in range(C)), RATE, int(window_s * RATE), int(stride_s * RATE),
                         "stored", (3.0,) * C, (1.0,) * C, detrend="linear",
                         filter=design_filter("bandpass", (0.5, 20.0), RATE, 4), max_gap=0.1)


def best_of(fn, repeats=7):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return float(np.median(out))


def main():
    rows = []
    # 1 s chunks through a stream
    pre = preprocessing(2.0, 1.0)
    times, values = recording(120)
    chunks = [(times[i : i + 100], values[i : i + 100]) for i in range(0, len(times), 100)]
    process_recording(pre, times[:300], values[:300])  # compile / load the kernels

    def numba_stream():
        s = StreamPreprocessor(pre)
        return np.concatenate([s.push(Chunk(t, v))[1] for t, v in chunks])

    def scipy_stream():
        s = ScipyStream(pre)
        return np.concatenate([s.push(t, v) for t, v in chunks])

    a, b = numba_stream(), scipy_stream()
    tn, ts = best_of(numba_stream), best_of(scipy_stream)
    rows.append({"case": "1 s chunks, 2 s windows", "windows": len(a), "numba_us_per_chunk": tn / len(chunks) * 1e6,
                 "scipy_us_per_chunk": ts / len(chunks) * 1e6, "scipy_over_numba": ts / tn,
                 "max_abs_diff": float(np.abs(a - b).max())})
    # 30 s windows, batch
    pre = preprocessing(30.0, 30.0)
    times, values = recording(300, seed=1)
    a, b = process_recording(pre, times, values)[1], scipy_batch(pre, times, values)
    tn = best_of(lambda: process_recording(pre, times, values))
    ts = best_of(lambda: scipy_batch(pre, times, values))
    rows.append({"case": "30 s windows, 300 s recording", "windows": len(a), "numba_us_per_window": tn / len(a) * 1e6,
                 "scipy_us_per_window": ts / len(a) * 1e6, "scipy_over_numba": ts / tn,
                 "max_abs_diff": float(np.abs(a - b).max())})
    print(write("runtime_preprocessing", "Runtime preprocessing: numba vs numpy/scipy", rows,
                ["case", "windows", "numba_us_per_chunk", "scipy_us_per_chunk", "numba_us_per_window",
                 "scipy_us_per_window", "scipy_over_numba", "max_abs_diff"],
                {"rate_hz": RATE, "channels": C, "filter": "butterworth bandpass 0.5-20 Hz order 4"},
                "Same outputs (max_abs_diff, float32 windows); time ratios from one run on one machine."))


if __name__ == "__main__":
    main()
