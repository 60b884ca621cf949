"""Windows as the teacher sees them: normalised values, real timestamps, observed mask and uncertainties.

Windows shorter than the teacher's shortest token sequence (MIN_TOKENS patches) are interpolated onto that many
samples, evenly spread over the window's real time span, so a 24-sample window still gives the encoder 16 tokens;
a grid point counts as observed when its nearest original sample was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgekit_runtime.errors import UserError
from edgekit_runtime.preprocess import Preprocessing

from ..data import WindowSet
from .model import MIN_TOKENS


@dataclass
class TeacherData:
    values: torch.Tensor  # [N, C, T] normalised; 0 where unobserved
    times: torch.Tensor  # [N, T] seconds
    observed: torch.Tensor  # [N, T] bool
    sigma: torch.Tensor | None  # [N, C, T] uncertainty of the normalised values, or None
    labels: torch.Tensor | None  # [N] int64

    def __len__(self) -> int:
        return len(self.values)

    def take(self, idx) -> "TeacherData":
        pick = lambda x: None if x is None else x[idx]  # noqa: E731
        return TeacherData(pick(self.values), pick(self.times), pick(self.observed), pick(self.sigma),
                           pick(self.labels))

    def crop(self, start: int, length: int) -> "TeacherData":
        """Samples [start, start + length) of every window."""
        cut = lambda x: None if x is None else x[..., start : start + length]  # noqa: E731
        return TeacherData(cut(self.values), cut(self.times), cut(self.observed), cut(self.sigma), self.labels)

    def univariate(self) -> "TeacherData":
        """Every channel of every window as a window of its own (what a channel-independent encoder sees)."""
        n, c, t = self.values.shape
        flat = lambda x: None if x is None else x.reshape(n * c, 1, t)  # noqa: E731
        rep = lambda x: None if x is None else x.repeat_interleave(c, 0)  # noqa: E731
        return TeacherData(flat(self.values), rep(self.times), rep(self.observed), flat(self.sigma),
                           rep(self.labels))


def upsample(values: np.ndarray, times: np.ndarray, observed: np.ndarray, sigma: np.ndarray | None, length: int):
    """Interpolate windows onto `length` evenly spaced times over each window's real time span."""
    n, c, _ = values.shape
    out_v = np.zeros((n, c, length), np.float32)
    out_s = None if sigma is None else np.ones((n, c, length), np.float32)
    out_t = np.zeros((n, length), np.float64)
    out_o = np.zeros((n, length), bool)
    for i in range(n):
        grid = np.linspace(times[i, 0], times[i, -1], length)
        nearest = np.abs(times[i][None, :] - grid[:, None]).argmin(1)
        obs = observed[i]
        out_t[i], out_o[i] = grid, obs[nearest]
        for ch in range(c):
            out_v[i, ch] = np.interp(grid, times[i][obs], values[i, ch][obs])
            if sigma is not None:
                out_s[i, ch] = np.interp(grid, times[i][obs], sigma[i, ch][obs])
    out_v[~np.broadcast_to(out_o[:, None, :], out_v.shape)] = 0.0
    return out_v, out_t, out_o, out_s


def prepare(ds: WindowSet, pre: Preprocessing, patch: int) -> TeacherData:
    """Normalise with the shared preprocessing and check what the teacher cannot train on.

    A time step with any NaN value counts as unobserved (its values are zero-filled); a window with no observed
    step, a NaN or infinite timestamp, or a non-positive uncertainty at an observed step is a clear error.
    """
    values = ds.values
    observed = ~np.isnan(values).any(axis=1)
    if ds.mask is not None:
        observed &= ds.mask
    empty = np.flatnonzero(~observed.any(axis=1))
    if len(empty):
        raise UserError(f"{ds.name}: window {empty[0]} has no observed values ({len(empty)} such windows); "
                        "drop them before training")
    # as data.model_inputs: windows cut from filtered recordings take only the window-level steps
    values = (pre.transform_windows if ds.filtered else pre.prepare_windows)(np.nan_to_num(values, nan=0.0))
    values[~np.broadcast_to(observed[:, None, :], values.shape)] = 0.0
    if ds.timestamps is not None:
        times = ds.timestamps.astype(np.float64)
        bad = np.argwhere(~np.isfinite(times))
        if len(bad):
            raise UserError(f"{ds.name}: window {bad[0][0]}, step {bad[0][1]}: timestamp is NaN or infinite")
    else:
        times = np.broadcast_to(np.arange(ds.length) / ds.sampling_rate, (len(ds), ds.length))
    times = times - times[:, :1]
    sigma = None
    if ds.uncertainty is not None:
        obs3 = np.broadcast_to(observed[:, None, :], ds.uncertainty.shape)
        bad = np.argwhere(obs3 & ~(ds.uncertainty > 0))
        if len(bad):
            w, c, t = bad[0]
            raise UserError(f"{ds.name}: window {w}, channel {ds.channel_names[c]!r}, step {t}: "
                            f"uncertainty must be positive, got {ds.uncertainty[w, c, t]}")
        std = np.asarray(pre.std if pre.std is not None else np.ones(ds.n_channels), np.float32)
        sigma = np.where(obs3, ds.uncertainty, 1.0) / (std[None, :, None] + 1e-8)
    sigma = None if sigma is None else np.asarray(sigma, np.float32)
    if ds.length < MIN_TOKENS * patch:
        values, times, observed, sigma = upsample(values, times, observed, sigma, MIN_TOKENS * patch)
    tensor = lambda x, dtype: None if x is None else torch.from_numpy(np.ascontiguousarray(x, dtype))  # noqa: E731
    labels = None if ds.labels is None else torch.from_numpy(ds.labels)
    return TeacherData(tensor(values, np.float32), tensor(times, np.float32), torch.from_numpy(observed),
                       tensor(sigma, np.float32), labels)
