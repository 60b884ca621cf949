"""Signal-level preprocessing (resampling, IIR filtering) and the streaming preprocessor, against scipy/numpy
references and against the batch path for random chunkings."""

import json

import numpy as np
import pytest
import scipy.signal as ss

from edgekit_runtime.errors import UserError
from edgekit_runtime.iir import IIRFilter
from edgekit_runtime.kernels import sosfilt
from edgekit_runtime.preprocess import Preprocessing, sliding_windows
from edgekit_runtime.resample import Resampler
from edgekit_runtime.stream import Chunk, StreamPreprocessor, process_recording

RATE = 50.0


def bandpass(order=4, lo=0.5, hi=10.0):
    sos = ss.butter(order, [lo, hi], btype="bandpass", fs=RATE, output="sos")
    return IIRFilter(sos, ss.sosfilt_zi(sos), "bandpass", (lo, hi), order)


def full_preprocessing(**kw):
    settings = dict(normalize="stored", mean=(0.1, -0.2, 0.0), std=(1.5, 0.7, 1.0), detrend="linear",
                    filter=bandpass(), max_gap=0.2)
    settings.update(kw)
    return Preprocessing(("a", "b", "c"), RATE, 64, 16, **settings)


def irregular_recording(rng, n=3000, gap_at=(1200,)):
    times = np.cumsum(rng.uniform(0.5, 1.5, n) / RATE)
    for g in gap_at:
        times[g:] += 1.0  # longer than max_gap: the recording splits there
    values = (np.sin(times[:, None] * [1.0, 3.0, 7.0]) + 0.3 * rng.normal(size=(n, 3)) + [5.0, -2.0, 0.0])
    return times, values.astype(np.float32), rng.integers(0, 3, n)


def test_sos_filter_matches_scipy_with_state_carried_across_chunks():
    rng = np.random.default_rng(0)
    f = bandpass()
    x = rng.normal(size=(500, 3))
    ref = ss.sosfilt(f.sos, x, axis=0, zi=f.zi[:, :, None] * x[0][None, None, :])[0]
    state = f.initial_state(x[0])
    got = np.concatenate([sosfilt(np.ascontiguousarray(x[a:b]), f.sos, state) for a, b in ((0, 1), (1, 77), (77, 500))])
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_filter_starts_in_steady_state_so_a_constant_signal_passes_unchanged_through_a_lowpass():
    sos = ss.butter(2, 5.0, btype="lowpass", fs=RATE, output="sos")
    f = IIRFilter(sos, ss.sosfilt_zi(sos))
    x = np.full((100, 2), [3.0, -1.0])
    np.testing.assert_allclose(sosfilt(x, f.sos, f.initial_state(x[0])), x, atol=1e-9)


def test_resampling_matches_numpy_interp_and_splits_at_gaps():
    rng = np.random.default_rng(1)
    times, values, _ = irregular_recording(rng, n=800, gap_at=(300,))
    pieces = Resampler(RATE, 0.2, 3).push(times, values)
    assert [p[0] for p in pieces] == [True, True]  # two segments, each starting a fresh grid
    for (_, t, v, _), seg in zip(pieces, (slice(0, 300), slice(300, 800))):
        ts = times[seg]
        assert t[0] == ts[0] and t[-1] <= ts[-1] and len(t) == int((ts[-1] - ts[0]) * RATE) + 1
        np.testing.assert_allclose(np.diff(t), 1 / RATE, rtol=1e-9)
        for c in range(3):
            np.testing.assert_allclose(v[:, c], np.interp(t, ts, values[seg, c].astype(np.float64)), atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_streaming_equals_batch_for_random_chunkings(seed):
    rng = np.random.default_rng(seed)
    pre = full_preprocessing() if seed % 2 == 0 else full_preprocessing(max_gap=None, detrend="constant")
    times, values, labels = irregular_recording(rng)
    ends, windows, wlabels = process_recording(pre, times, values, labels)
    assert len(windows) > 50
    # chunks from a single sample to a few seconds, including many one-sample chunks
    sizes = rng.choice([1, 1, 2, 7, 33, 150, 400], size=len(times))
    cuts = np.cumsum(sizes)
    cuts = cuts[cuts < len(times)]
    stream = StreamPreprocessor(pre)
    got = [stream.push(Chunk(times[a:b], values[a:b], False, labels[a:b]))
           for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(times)])]
    np.testing.assert_allclose(np.concatenate([g[1] for g in got]), windows, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), ends)
    np.testing.assert_array_equal(np.concatenate([g[2] for g in got]), wlabels)


def test_no_window_spans_a_gap():
    rng = np.random.default_rng(3)
    times, values, _ = irregular_recording(rng, n=1000, gap_at=(500,))
    pre = full_preprocessing()
    ends, windows, _ = process_recording(pre, times, values)
    gap_start, gap_end = times[499], times[500]
    starts = ends - (pre.window - 1) / RATE
    assert not np.any((starts <= gap_start) & (ends >= gap_end))
    assert np.any(ends < gap_start) and np.any(starts > gap_end)


def test_batch_path_without_signal_steps_equals_training_preparation_of_cut_windows():
    rng = np.random.default_rng(4)
    pre = full_preprocessing(filter=None, max_gap=None)
    values = rng.normal(size=(640, 3)).astype(np.float32)
    _, windows, _ = process_recording(pre, np.arange(640) / RATE, values)
    np.testing.assert_array_equal(windows, pre.prepare_windows(sliding_windows(values, 64, 16)))


def test_detrend_removes_lines_and_means():
    t = np.arange(40, dtype=np.float32)
    x = np.stack([3 * t - 7, np.full(40, 4.0)])[None].astype(np.float32)
    pre = Preprocessing(("a", "b"), 1.0, 40, 40, "none", detrend="linear")
    np.testing.assert_allclose(pre.transform_windows(x), 0, atol=1e-4)
    y = Preprocessing(("a", "b"), 1.0, 40, 40, "none", detrend="constant").transform_windows(x)
    np.testing.assert_allclose(y.mean(axis=2), 0, atol=1e-4)
    np.testing.assert_allclose(np.diff(y[0, 0]), 3, atol=1e-4)  # only the mean went


def test_preprocess_json_round_trip_and_older_files_still_load():
    pre = full_preprocessing()
    back = Preprocessing.from_json(json.loads(json.dumps(pre.to_json())))
    assert (back.detrend, back.max_gap, back.filter.kind,
            back.filter.cutoff_hz) == ("linear", 0.2, "bandpass", (0.5, 10.0))
    np.testing.assert_array_equal(back.filter.sos, pre.filter.sos)
    old = {"channels": ["a"], "sampling_rate": 10.0, "window": 8, "stride": 8, "normalize": "window"}
    p = Preprocessing.from_json(old)
    assert (p.detrend, p.filter, p.max_gap) == ("none", None, None)
    assert p.to_json() == old


@pytest.mark.parametrize("change, message", [
    ({"detrend": "quadratic"}, "unknown detrend mode"),
    ({"max_gap": 0.001}, "max_gap must be at least one sample period"),
    ({"filter": {"sos": [[1, 0, 0, 2, 0, 0]], "zi": [[0, 0]]}}, "a0 = 1"),
    ({"filter": {"sos": [[1, 0, 0]], "zi": [[0, 0]]}}, "expected sos"),
])
def test_invalid_signal_settings_are_user_errors(change, message):
    d = {**full_preprocessing().to_json(), **change}
    if "max_gap" in change:
        d["resample"] = {"max_gap_s": change["max_gap"]}
    with pytest.raises(UserError, match=message):
        Preprocessing.from_json(d)


@pytest.mark.parametrize("settings", [{}, {"max_gap": None}, {"detrend": "constant", "normalize": "window"},
                                      {"normalize": "window_scale"}, {"filter": None, "detrend": "none"}])
def test_numba_path_agrees_with_the_plain_numpy_reference(settings):
    from edgekit_runtime import reference

    pre = full_preprocessing(**settings)
    times, values, _ = irregular_recording(np.random.default_rng(5))
    got = process_recording(pre, times, values)[1]
    ref = reference.process(pre, times, values)
    assert got.shape == ref.shape and len(got) > 50
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
