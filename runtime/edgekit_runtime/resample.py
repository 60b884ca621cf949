"""Resampling irregular timestamps onto the nominal sampling grid, one chunk at a time (kernels.resample).

The grid of a segment starts at its first sample's time t0 and has points t0 + k / rate (computed from k, never
accumulated, so a chunked stream lands on exactly the same points as the whole signal). Each point is the linear
interpolation of the two samples around it. A jump in time longer than `max_gap` seconds ends the segment: nothing
is interpolated across it, and the next sample starts a new grid.
"""

from __future__ import annotations

import math

import numpy as np


class Resampler:
    """Stateful resampler; `push` splits its output into pieces at gaps."""

    def __init__(self, rate: float, max_gap: float, n_channels: int):
        self.rate, self.max_gap, self.n_channels = float(rate), float(max_gap), n_channels
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros(4, np.float64)
        self._prev_v = np.zeros(self.n_channels, np.float64)

    def push(self, times: np.ndarray, values: np.ndarray) -> list[tuple[bool, np.ndarray, np.ndarray, np.ndarray]]:
        """Resample a chunk; return pieces (starts_new_segment, grid times [P], values [P, C] float64,
        nearest input index [P])."""
        from .kernels import resample

        times = np.ascontiguousarray(times, np.float64)
        values = np.ascontiguousarray(values, np.float64)
        pieces = []
        start = 0
        while start < len(times):
            new_segment = self._state[3] == 0.0
            next_grid = times[start] if new_segment else self._state[0] + self._state[1] / self.rate
            bound = int(math.floor(max(0.0, times[-1] - next_grid) * self.rate)) + 2
            out_t = np.empty(bound, np.float64)
            out_v = np.empty((bound, self.n_channels), np.float64)
            out_src = np.empty(bound, np.int64)
            stop, n = resample(times, values, start, self._state, self._prev_v, self.rate, self.max_gap,
                               out_t, out_v, out_src)
            pieces.append((bool(new_segment), out_t[:n], out_v[:n], out_src[:n]))
            if stop < len(times):  # a gap: the next sample opens a new segment
                self.reset()
            start = stop
        return pieces
