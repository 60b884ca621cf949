"""The numba preprocessing kernels and the streaming windower, against plain numpy references."""

import io

import numpy as np
import pytest

from edgekit_runtime.errors import UserError
from edgekit_runtime.preprocess import Preprocessing, sliding_windows, window_labels
from edgekit_runtime.readers import read_chunks
from edgekit_runtime.stream import Chunk, Windower


def test_stored_normalisation_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, (5, 3, 40)).astype(np.float32)
    mean, std = (1.0, -2.0, 0.5), (2.0, 0.5, 4.0)
    pre = Preprocessing(("a", "b", "c"), 10.0, 40, 40, "stored", mean, std)
    expected = (x - np.array(mean)[None, :, None]) / (np.array(std)[None, :, None] + 1e-8)
    np.testing.assert_allclose(pre.transform_windows(x), expected, rtol=1e-5, atol=1e-5)


def test_window_normalisation_gives_zero_mean_unit_std():
    x = np.random.default_rng(1).normal(5, 3, (4, 2, 64)).astype(np.float32)
    y = Preprocessing(("a", "b"), 1.0, 64, 64, "window").transform_windows(x)
    np.testing.assert_allclose(y.mean(axis=2), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=2), 1, atol=1e-4)


def test_window_scale_offsets_each_window_by_its_standardised_log_scale():
    x = np.random.default_rng(2).normal(0, 1, (6, 2, 32)) * np.array([1e-3, 1e3])[None, :, None]
    x = x.astype(np.float32)
    mean, std = (-7.0, 7.0), (0.5, 2.0)
    pre = Preprocessing(("a", "b"), 1.0, 32, 32, "window_scale", mean, std)
    offset = pre.transform_windows(x) - Preprocessing(("a", "b"), 1.0, 32, 32, "window").transform_windows(x)
    expected = (np.log(x.astype(np.float64).std(axis=2)) - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(offset, np.broadcast_to(expected[:, :, None], x.shape), atol=1e-4)
    assert Preprocessing.from_json(pre.to_json()) == pre
    with pytest.raises(UserError, match="'window_scale' needs mean and std"):
        Preprocessing(("a",), 1.0, 8, 8, "window_scale")


def test_wrong_channel_count_and_bad_settings_are_user_errors():
    pre = Preprocessing(("a", "b"), 1.0, 8, 8, "window")
    with pytest.raises(UserError, match=r"\[N, 2, T\]"):
        pre.transform_windows(np.zeros((1, 3, 8), np.float32))
    with pytest.raises(UserError, match="mean and std"):
        Preprocessing(("a",), 1.0, 8, 8, "stored")
    with pytest.raises(UserError, match="unknown normalize mode"):
        Preprocessing(("a",), 1.0, 8, 8, "zscore")


def test_sliding_windows_matches_numpy_stride_tricks():
    s = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    w = sliding_windows(s, 8, 3)
    ref = np.lib.stride_tricks.sliding_window_view(s, 8, axis=0)[::3]
    np.testing.assert_array_equal(w, ref)
    assert sliding_windows(s[:5], 8, 3).shape == (0, 3, 8)


def test_window_labels_take_the_majority():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    assert window_labels(labels, 5, 5).tolist() == [0, 2]
    assert window_labels(labels, 4, 2).tolist() == [0, 1, 2, 2]  # [0,0,0,1] [0,1,1,2]: tie->1 [1,2,2,2] [2,2,2,2]


@pytest.mark.parametrize("seed", range(5))
def test_streaming_windows_equal_batch_windows_for_random_chunkings(seed):
    rng = np.random.default_rng(seed)
    n, c, window, stride = int(rng.integers(50, 400)), 3, 16, int(rng.integers(1, 20))
    values = rng.normal(size=(n, c)).astype(np.float32)
    times = np.cumsum(rng.uniform(0.01, 0.2, n))
    labels = rng.integers(0, 3, n)
    cuts = np.sort(rng.choice(np.arange(1, n), size=int(rng.integers(1, 30)), replace=False))
    wd = Windower(window, stride, c)
    got_w, got_t, got_l = [], [], []
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, n]):
        ends, w, lab = wd.push(Chunk(times[lo:hi], values[lo:hi], False, labels[lo:hi]))
        got_w.append(w), got_t.append(ends), got_l.append(lab)
    batch = sliding_windows(values, window, stride)
    np.testing.assert_array_equal(np.concatenate(got_w), batch)
    np.testing.assert_array_equal(np.concatenate(got_t), times[np.arange(len(batch)) * stride + window - 1])
    np.testing.assert_array_equal(np.concatenate(got_l), window_labels(labels, window, stride))


def test_csv_reader_skips_bad_rows_and_never_windows_across_them():
    text = "time,a\n" + "".join(f"{i},{i}\n" for i in range(6)) + "6,oops\n" + "".join(f"{i},{i}\n"
                                                                                       for i in range(7, 13))
    bad = []
    chunks = list(read_chunks(io.StringIO(text), "mem", ("a",), 1.0, fmt="csv", on_bad=bad.append))
    assert bad == ["mem:8: bad row: non-numeric value"]
    wd = Windower(4, 4, 1)
    windows = np.concatenate([wd.push(ch)[1] for ch in chunks])
    # rows 0-5 give one window (0-3); rows 7-12 give one window (7-10); none mixes the two segments
    np.testing.assert_array_equal(windows[:, 0], [[0, 1, 2, 3], [7, 8, 9, 10]])
    with pytest.raises(UserError, match="mem:8: bad row"):
        list(read_chunks(io.StringIO(text), "mem", ("a",), 1.0, fmt="csv", strict=True))


@pytest.mark.parametrize("row, reason", [
    ("1,2,3", "expected 2 columns"),
    ("1,nan", "NaN or infinite"),
    ("-5,1", "time goes backwards"),
])
def test_csv_reader_reports_each_kind_of_bad_row(row, reason):
    bad = []
    list(read_chunks(io.StringIO(f"time,a\n0,1\n{row}\n"), "mem", ("a",), 1.0, fmt="csv", on_bad=bad.append))
    assert len(bad) == 1 and bad[0].startswith("mem:3: bad row: " + reason)


def test_csv_reader_needs_the_model_channels():
    with pytest.raises(UserError, match="missing channel column"):
        list(read_chunks(io.StringIO("time,x\n0,1\n"), "mem", ("a",), 1.0, fmt="csv"))


def test_csv_reader_refuses_a_model_channel_named_twice():
    with pytest.raises(UserError, match="column name\\(s\\) 'a' appear more than once"):
        list(read_chunks(io.StringIO("time,a,a\n0,1,2\n"), "mem", ("a",), 1.0, fmt="csv"))
