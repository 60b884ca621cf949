"""The numba kernels: the per-sample recursions numpy cannot vectorise (IIR filtering, resampling onto the grid).

Imported only when a model's preprocessing filters or resamples: numba, its LLVM and the cached kernels took a
run process from 67 to 200 MB and its first prediction from 0.23 to 0.87 s (benchmarks/results/runtime_vs_torch.md),
which a bundle with window-level steps alone (numpy) does not pay.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def sosfilt(x, sos, z):
    """Filter `[S, C]` float64 samples through the cascade; `z` `[n_sections, C, 2]` is updated in place
    (transposed direct form II, as scipy.signal.sosfilt)."""
    s_len, c_len = x.shape
    n_sec = sos.shape[0]
    out = np.empty_like(x)
    for s in range(s_len):
        for c in range(c_len):
            v = x[s, c]
            for j in range(n_sec):
                y = sos[j, 0] * v + z[j, c, 0]
                z[j, c, 0] = sos[j, 1] * v - sos[j, 4] * y + z[j, c, 1]
                z[j, c, 1] = sos[j, 2] * v - sos[j, 5] * y
                v = y
            out[s, c] = v
    return out


@njit(cache=True)
def resample(times, values, start, state, prev_v, rate, max_gap, out_t, out_v, out_src):
    """Consume samples from `start`; write grid points to out_*; return (next input index, points written).

    Stops early, before sample i, when the gap to it exceeds max_gap (the caller starts a new segment there).
    `state` = [t0, k, prev_t, has_prev] and `prev_v` [C] are updated in place. `out_src` is the index of the
    input sample nearest to each grid point (to carry labels)."""
    n_out = 0
    i = start
    n_in, c_len = values.shape
    while i < n_in:
        t = times[i]
        if state[3] == 0.0:
            state[0] = t
            state[1] = 1.0
            state[2] = t
            state[3] = 1.0
            for c in range(c_len):
                prev_v[c] = values[i, c]
                out_v[n_out, c] = values[i, c]
            out_t[n_out] = t
            out_src[n_out] = i
            n_out += 1
            i += 1
            continue
        prev_t = state[2]
        if t - prev_t > max_gap:
            return i, n_out
        while True:
            g = state[0] + state[1] / rate
            if g > t:
                break
            w = (g - prev_t) / (t - prev_t) if t > prev_t else 1.0
            for c in range(c_len):
                out_v[n_out, c] = prev_v[c] * (1.0 - w) + values[i, c] * w
            out_t[n_out] = g
            out_src[n_out] = i if w >= 0.5 else i - 1
            n_out += 1
            state[1] += 1.0
        state[2] = t
        for c in range(c_len):
            prev_v[c] = values[i, c]
        i += 1
    return i, n_out
