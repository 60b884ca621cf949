"""Fitting the runtime's Preprocessing to training windows: which normalisation, and its statistics."""

from __future__ import annotations

import numpy as np

from edgekit_runtime.errors import UserError
from edgekit_runtime.preprocess import Preprocessing, window_log_scale

from .data import model_inputs

# "auto" normalises per window when, in some channel, the windows' standard deviations span more than two orders of
# magnitude between the 10th and 90th percentile: one global scale would leave the quiet windows as flat lines
# (PLAID's appliance currents span 1e5, Covid3Month_disc's daily case counts 280; an IMU's still and running
# windows, BasicMotions, span at most 56). A spread that wide says something about the class, so the model gets each
# window's scale too ("window_scale"; PLAID, first fit, seed 0: 0.808 -> 0.883; Covid3Month_disc, seeds 0-5: 0.59
# -> 0.65; BasicMotions reads 1.0 either way).
SCALE_SPREAD_FOR_WINDOW = 100.0


def resolve_normalize(normalize: str, windows: np.ndarray) -> str:
    """"stored" or "window_scale" for "auto", from the spread of the per-window scales of `windows` [N, C, T]."""
    if normalize != "auto":
        return normalize
    sd = windows.std(axis=2)
    spread = np.percentile(sd, 90, axis=0) / np.maximum(np.percentile(sd, 10, axis=0), 1e-12)
    return "window_scale" if spread.max() > SCALE_SPREAD_FOR_WINDOW else "stored"


def fit_preprocessing(train, normalize: str, stride: int, steps: dict | None = None) -> Preprocessing:
    """Per-channel statistics of the training windows (observed samples only, after the signal-level `steps`:
    Preprocessing's detrend, filter and max_gap, see edgekit.filters.signal_steps) and the windowing to use.
    `normalize`: "stored", "window", "window_scale" or "auto" (`resolve_normalize`)."""
    steps = steps or {}
    base = Preprocessing(train.channel_names, train.sampling_rate, train.length, stride, "none", **steps)
    windows = model_inputs(base, train)  # filtered, not yet normalised
    x = windows.transpose(1, 0, 2).reshape(train.n_channels, -1)
    if train.mask is not None:
        x = x[:, train.mask.reshape(-1)]
    # A channel with one value throughout (an ID or status column, a disconnected input) cannot inform the model,
    # and its zero spread would scale any other value it takes on the board by 1e8.
    constant = [name for name, row in zip(train.channel_names, x) if row.size and row.min() == row.max()]
    if constant:
        raise UserError(f"channel(s) {', '.join(map(repr, constant))} hold a single value in every training window; "
                        "leave them out with --channels")
    normalize = resolve_normalize(normalize, windows)
    mean = std = None
    if normalize == "stored":
        mean, std = tuple(x.mean(1).astype(float)), tuple(x.std(1).astype(float))
    elif normalize == "window_scale":
        scale = window_log_scale(windows)
        mean, std = tuple(scale.mean(0).astype(float)), tuple(scale.std(0).astype(float))
    return Preprocessing(train.channel_names, train.sampling_rate, train.length, stride, normalize, mean, std,
                         **steps)
