"""The one in-memory dataset type: a set of fixed-length multichannel windows."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from edgekit_runtime.errors import UserError
from edgekit_runtime.preprocess import Preprocessing, sliding_windows


@dataclass(frozen=True)
class WindowSet:
    """Windows of sensor data and what is known about them.

    values       [N, C, T] float32
    labels       [N] int64 indices into `class_names`, or None for unlabelled data
    timestamps   [N, T] float64 seconds, or None when sampled regularly at `sampling_rate` (irregular allowed)
    uncertainty  [N, C, T] float32 per-value standard deviation, or None when unknown
    mask         [N, T] bool, True where a sample was observed (False on padding), or None when all observed
    groups       [N] str: the recording, subject, file or source split a window came from (grouped splits)
    filtered     True when the windows were cut from recordings after their recording-level steps (resampling,
                 filter: `load_table` with a signal spec), as `edgekit run` cuts them; model input then needs
                 only the window-level steps (see `model_inputs`)
    """

    values: np.ndarray
    labels: np.ndarray | None
    channel_names: tuple[str, ...]
    class_names: tuple[str, ...]
    sampling_rate: float
    timestamps: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    mask: np.ndarray | None = None
    groups: np.ndarray | None = None
    name: str = ""
    filtered: bool = False

    def __post_init__(self):
        n, c, t = self.values.shape
        if self.values.dtype != np.float32:
            raise ValueError("values must be float32")
        if len(self.channel_names) != c:
            raise ValueError(f"{c} channels but {len(self.channel_names)} channel names")
        expected = {"labels": (n,), "timestamps": (n, t), "uncertainty": (n, c, t), "mask": (n, t), "groups": (n,)}
        for key, shape in expected.items():
            arr = getattr(self, key)
            if arr is not None and arr.shape != shape:
                raise ValueError(f"{key} has shape {arr.shape}, expected {shape}")
        if self.labels is not None and len(self.labels) and (self.labels.min() < 0
                                                             or self.labels.max() >= len(self.class_names)):
            raise ValueError("labels out of range of class_names")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def n_channels(self) -> int:
        return self.values.shape[1]

    @property
    def length(self) -> int:
        return self.values.shape[2]

    def subset(self, index) -> "WindowSet":
        index = np.asarray(index)
        per_window = {"values", "labels", "timestamps", "uncertainty", "mask", "groups"}
        changes = {f.name: getattr(self, f.name)[index] for f in fields(self)
                   if f.name in per_window and getattr(self, f.name) is not None}
        return replace(self, **changes)

    def class_counts(self) -> dict[str, int]:
        if self.labels is None:
            return {}
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(k) for name, k in zip(self.class_names, counts)}

    def summary(self) -> dict:
        return {
            "name": self.name,
            "windows": len(self),
            "channels": self.n_channels,
            "length": self.length,
            "shape": list(self.values.shape),
            "sampling_rate_hz": self.sampling_rate,
            "channel_names": list(self.channel_names),
            "classes": list(self.class_names),
            "class_balance": self.class_counts(),
            "timestamps": "per-sample" if self.timestamps is not None
            else f"implicit, regular at {self.sampling_rate:g} Hz",
            "uncertainty": self.uncertainty is not None,
            "padded": bool(self.mask is not None and not self.mask.all()),
            "groups": sorted(set(self.groups.tolist())) if self.groups is not None else [],
        }


def cut_windows(samples: np.ndarray, window: int, stride: int, what: str) -> np.ndarray:
    """`[S, C]` -> `[N, C, window]`, with a clear error when the recording is shorter than one window."""
    if window < 1 or stride < 1:
        raise UserError(f"window and stride must be positive, got window={window}, stride={stride}")
    if len(samples) < window:
        raise UserError(f"{what}: {len(samples)} samples, fewer than one window of {window}")
    return sliding_windows(np.ascontiguousarray(samples), window, stride)


def model_inputs(pre: Preprocessing, windows: WindowSet) -> np.ndarray:
    """Model-ready windows: the window-level steps for windows cut from processed recordings; for windows that
    are whole cases (bundled benchmarks), every step, each case filtered from its own first sample (as `edgekit
    run` filters a recording)."""
    return pre.transform_windows(windows.values) if windows.filtered else pre.prepare_windows(windows.values)
