"""Windows as the teacher sees them: normalised values, real timestamps, observed mask and uncertainties."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgekit_runtime.errors import UserError
from edgekit_runtime.preprocess import Preprocessing

from ..data import WindowSet


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


def prepare(ds: WindowSet, pre: Preprocessing) -> TeacherData:
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
    values = pre.prepare_windows(np.nan_to_num(values, nan=0.0))
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
        sigma = torch.from_numpy(np.ascontiguousarray(sigma, dtype=np.float32))
    labels = None if ds.labels is None else torch.from_numpy(ds.labels)
    return TeacherData(torch.from_numpy(values), torch.from_numpy(np.ascontiguousarray(times, np.float32)),
                       torch.from_numpy(observed), sigma, labels)


def time_scales(ds: WindowSet) -> dict:
    """Periods for the time encoding and scales for the time bias, from the data's sampling rate and duration."""
    dt = 1.0 / ds.sampling_rate
    duration = ds.length * dt
    return {"min_period": 2 * dt, "max_period": 4 * duration}
