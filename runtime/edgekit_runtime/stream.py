"""Streaming preprocessing: chunks of samples in, model-ready windows out.

A `StreamPreprocessor` accepts chunks of any size (one sample to many seconds) and returns exactly the windows
the batch path (`Preprocessing` applied to the concatenated segment in one chunk) produces: resampler, filter
and window buffer all carry their state across chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .preprocess import Preprocessing, sliding_windows, window_labels
from .resample import Resampler


@dataclass
class Chunk:
    """Consecutive good samples; `new_segment` is true when a bad row separates them from the previous chunk."""

    times: np.ndarray  # [S] seconds
    values: np.ndarray  # [S, C] float32
    new_segment: bool = False
    labels: np.ndarray | None = None  # [S] class indices (-1: not a known class), when a label column is read


class Windower:
    """Turns chunks of samples into the windows the batch path would cut from the concatenated segment."""

    def __init__(self, window: int, stride: int, n_channels: int):
        self.window, self.stride, self.n_channels = window, stride, n_channels
        self.reset()

    def reset(self) -> None:
        self._values = np.empty((0, self.n_channels), np.float32)
        self._times = np.empty(0, np.float64)
        self._labels = np.empty(0, np.int64)

    def push(self, chunk: Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Add a chunk's samples; return the windows they complete: (end times [N], windows [N, C, window],
        majority labels [N] or None)."""
        if chunk.new_segment:
            self.reset()
        v = np.concatenate([self._values, chunk.values])
        t = np.concatenate([self._times, chunk.times])
        lab = np.concatenate([self._labels, chunk.labels]) if chunk.labels is not None else None
        windows = sliding_windows(np.ascontiguousarray(v), self.window, self.stride)
        n = len(windows)
        ends = t[np.arange(n) * self.stride + self.window - 1]
        wlabels = None
        if lab is not None:
            wlabels = window_labels(lab[: (n - 1) * self.stride + self.window], self.window, self.stride) if n \
                else np.empty(0, np.int64)
        keep = n * self.stride
        self._values, self._times = v[keep:], t[keep:]
        if lab is not None:
            self._labels = lab[keep:]
        return ends, windows, wlabels


class StreamPreprocessor:
    """Resample -> filter -> window -> detrend/normalise, chunk by chunk."""

    def __init__(self, pre: Preprocessing, stride: int | None = None):
        self.pre = pre
        c = len(pre.channels)
        self.resampler = Resampler(pre.sampling_rate, pre.max_gap, c) if pre.max_gap is not None else None
        self.windower = Windower(pre.window, stride or pre.stride, c)
        self._filter_state = None
        self._last_label = -1

    def reset(self) -> None:
        if self.resampler is not None:
            self.resampler.reset()
        self.windower.reset()
        self._filter_state = None

    def push(self, chunk: Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(window end times [N], model-ready windows [N, C, T] float32, majority labels [N] or None)."""
        if chunk.new_segment:
            self.reset()
        if self.resampler is None:
            pieces = [(False, chunk.times, chunk.values, chunk.labels)]
        else:
            pieces = []
            for new_segment, t, v, src in self.resampler.push(chunk.times, chunk.values):
                lab = None
                if chunk.labels is not None:  # src -1: the last sample of the previous chunk
                    lab = np.concatenate([[self._last_label], chunk.labels])[src + 1]
                pieces.append((new_segment, t, v, lab))
            if chunk.labels is not None and len(chunk.labels):
                self._last_label = int(chunk.labels[-1])
        out = []
        for new_segment, t, v, lab in pieces:
            if new_segment:
                self.windower.reset()
                self._filter_state = None
            if len(t) == 0:
                continue
            out.append(self.windower.push(Chunk(t, self._filter(v), False, lab)))
        c, w = len(self.pre.channels), self.pre.window
        ends = np.concatenate([o[0] for o in out]) if out else np.empty(0, np.float64)
        windows = np.concatenate([o[1] for o in out]) if out else np.empty((0, c, w), np.float32)
        labels = None
        if chunk.labels is not None:
            labels = np.concatenate([o[2] for o in out]) if out else np.empty(0, np.int64)
        return ends, self.pre.transform_windows(windows), labels

    def _filter(self, values: np.ndarray) -> np.ndarray:
        f = self.pre.filter
        if f is None:
            return np.asarray(values, np.float32)
        from .kernels import sosfilt

        x = np.ascontiguousarray(values, np.float64)
        if self._filter_state is None:
            self._filter_state = f.initial_state(x[0])
        return sosfilt(x, f.sos, self._filter_state).astype(np.float32)


def process_recording(pre: Preprocessing, times: np.ndarray, values: np.ndarray, labels: np.ndarray | None = None,
                      stride: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The batch path: a whole recording `[S, C]` (times [S]) to (window ends, model-ready windows, labels)."""
    return StreamPreprocessor(pre, stride).push(Chunk(np.asarray(times, np.float64), values, False, labels))
