"""Compile-side filter design and training-time preprocessing with signal-level steps."""

import json

import numpy as np
import pytest
import scipy.signal as ss

from edgekit.data import load_dataset
from edgekit.filters import design_filter, signal_steps
from edgekit.train import fit_preprocessing
from edgekit_runtime.errors import UserError
from edgekit_runtime.preprocess import Preprocessing


def test_designed_filter_has_the_requested_response():
    f = design_filter("bandpass", (1.0, 5.0), 50.0, order=4)
    w, h = ss.sosfreqz(f.sos, worN=[0.05, 3.0, 20.0], fs=50.0)
    gain = np.abs(h)
    assert gain[1] > 0.95 and gain[0] < 1e-3 and gain[2] < 1e-2  # passes 3 Hz, stops DC drift and 20 Hz
    hp = design_filter("highpass", (0.5,), 10.0, order=2)
    assert (hp.kind, hp.cutoff_hz, hp.order, hp.sos.shape) == ("highpass", (0.5,), 2, (1, 6))


@pytest.mark.parametrize("options, message", [
    ({"highpass": 6.0}, "between 0 and the Nyquist frequency"),
    ({"bandpass": "3,1"}, "must be increasing"),
    ({"bandpass": "1"}, "--bandpass takes LOW,HIGH"),
    ({"highpass": 1.0, "bandpass": "1,2"}, "not both"),
    ({"highpass": 1.0, "filter_order": 0}, "--filter-order must be at least 1"),
])
def test_bad_filter_options_are_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        signal_steps(options, 10.0)


def test_stored_statistics_are_taken_after_the_signal_steps():
    train = load_dataset("BasicMotions")
    pre = fit_preprocessing(train, "stored", train.length, {"highpass": 0.5, "detrend": "linear"})
    x = pre.prepare_windows(train.values)
    np.testing.assert_allclose(x.mean(axis=(0, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 2)), 1, atol=1e-3)
    # the stored preprocessing round-trips through preprocess.json with its filter
    back = Preprocessing.from_json(json.loads(json.dumps(pre.to_json())))
    np.testing.assert_array_equal(back.prepare_windows(train.values[:3]), x[:3])


def test_without_signal_options_training_preprocessing_is_unchanged():
    train = load_dataset("BasicMotions")
    pre = fit_preprocessing(train, "stored", train.length)
    x = train.values.transpose(1, 0, 2).reshape(train.n_channels, -1)
    np.testing.assert_allclose(pre.mean, x.mean(1), rtol=1e-6)
    assert "filter" not in pre.to_json() and "detrend" not in pre.to_json()
