"""Calibration windows for static int8 quantisation: a seeded sample of training windows, checked first."""

from __future__ import annotations

import numpy as np

from edgekit_runtime.errors import UserError

DEFAULT_SIZE = 256


def calibration_windows(windows: np.ndarray | None, size: int = DEFAULT_SIZE, seed: int = 0) -> np.ndarray:
    """Up to `size` windows `[N, C, T]` float32 drawn without replacement from `windows`.

    Activation ranges are fitted to these windows, so an empty set or one with NaN/inf is refused rather than
    turned into scales of 0 or NaN.
    """
    if size < 1:
        raise UserError(f"calibration size must be at least 1, got {size}")
    if windows is None or len(windows) == 0:
        raise UserError("the calibration set is empty: int8 quantisation needs training windows to fit "
                        "activation ranges")
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim != 3:
        raise UserError(f"calibration windows must be [N, C, T], got shape {list(windows.shape)}")
    bad = ~np.isfinite(windows).all(axis=(1, 2))
    if bad.any():
        raise UserError(f"the calibration set contains NaN or inf in {int(bad.sum())} of {len(windows)} windows "
                        f"(first: window {int(np.flatnonzero(bad)[0])}); clean or drop them before quantising")
    if len(windows) > size:
        windows = windows[np.sort(np.random.default_rng(seed).choice(len(windows), size, replace=False))]
    return np.ascontiguousarray(windows)
