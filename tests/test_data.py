"""The data layer on the real datasets that ship with aeon, and on users' CSV/Parquet files."""

import numpy as np
import pandas as pd
import pytest

from edgekit.data import load_dataset, load_table, load_tables, resolve_split, split_dataset
from edgekit_runtime.errors import UserError

# name -> (windows, channels, length, classes): the published sizes of each dataset.
EXPECTED = {
    "BasicMotions": (80, 6, 100, 4),
    "JapaneseVowels": (640, 12, 29, 9),
    "ACSF1": (200, 1, 1460, 10),
    "GunPoint": (200, 1, 150, 2),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_bundled_shapes_and_classes(name):
    ds = load_dataset(name)
    n, c, t, k = EXPECTED[name]
    assert ds.values.shape == (n, c, t) and ds.values.dtype == np.float32
    assert len(ds.class_names) == k
    assert set(np.unique(ds.labels)) == set(range(k))
    assert np.isfinite(ds.values).all()
    assert set(ds.groups) == {"train", "test"}


def test_plaid_unequal_lengths_are_masked_edge_padding():
    pytest.importorskip("sktime")  # carries the files (the bench extra)
    ds = load_dataset("PLAID")
    assert ds.values.shape == (1074, 1, 1344) and len(ds.class_names) == 11
    assert list(np.unique(ds.groups, return_counts=True)[1]) == [537, 537]  # test, train
    lengths = ds.mask.sum(axis=1)
    assert lengths.min() == 100 and lengths.max() == 1344
    i = int(np.argmin(lengths))
    assert (ds.values[i, 0, 100:] == ds.values[i, 0, 99]).all()


def test_bundled_names_are_case_insensitive_and_unknown_names_fail():
    assert load_dataset("basicmotions").name == "BasicMotions"
    with pytest.raises(UserError, match="unknown dataset 'NoSuchSet'"):
        load_dataset("NoSuchSet")


def test_japanese_vowels_padding_is_masked_edge_padding():
    ds = load_dataset("JapaneseVowels")
    lengths = ds.mask.sum(axis=1)
    assert lengths.min() == 7 and lengths.max() == 29
    i = int(np.argmin(lengths))
    n = lengths[i]
    assert not ds.mask[i, n:].any()
    # padding repeats the last observed frame
    np.testing.assert_array_equal(ds.values[i, :, n:], np.repeat(ds.values[i, :, n - 1 : n], 29 - n, axis=1))


def test_daphnet_windowing_is_configurable():
    ds = load_dataset("Daphnet", window=128, stride=64)
    assert ds.values.shape == ((7040 - 128) // 64 + 1, 9, 128)
    assert ds.sampling_rate == 64.0
    # consecutive windows overlap by window - stride samples
    np.testing.assert_array_equal(ds.values[0, :, 64:], ds.values[1, :, :64])
    np.testing.assert_allclose(ds.timestamps[1, 0] - ds.timestamps[0, 0], 1.0)
    # the shipped excerpt has no freeze-of-gait annotation: every window is "normal"
    assert ds.class_counts() == {"normal": len(ds), "freeze": 0}
    assert len(set(ds.groups)) == 4
    with pytest.raises(UserError, match="fixed windows"):
        load_dataset("GunPoint", window=10)


def test_random_split_is_deterministic_stratified_and_disjoint():
    ds = load_dataset("BasicMotions")
    a = split_dataset(ds, "random", seed=3)
    b = split_dataset(ds, "random", seed=3)
    c = split_dataset(ds, "random", seed=4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.values, y.values)
    assert not np.array_equal(a[2].values, c[2].values)
    train, val, test = a
    assert len(train) + len(val) + len(test) == len(ds)
    assert test.class_counts() == {k: 4 for k in ds.class_names}
    keys = lambda s: {v.tobytes() for v in s.values}  # noqa: E731
    assert not keys(train) & keys(test) and not keys(val) & keys(test)


def test_group_split_holds_out_whole_groups():
    ds = load_dataset("Daphnet", window=128, stride=64)
    train, val, test = split_dataset(ds, "group", seed=1)
    assert set(test.groups).isdisjoint(set(train.groups) | set(val.groups))
    train, val, test = split_dataset(load_dataset("GunPoint"), "group", test_groups=["test"])
    assert len(test) == 150 and len(train) + len(val) == 50
    with pytest.raises(UserError, match="unknown group"):
        split_dataset(ds, "group", test_groups=["nope"])
    with pytest.raises(UserError, match="all 2 groups are test groups; leave at least one for training"):
        split_dataset(load_dataset("GunPoint"), "group", test_groups=["test", "train"])
    # naming test groups asks for a grouped split; with --split random they would be ignored
    assert resolve_split(ds, None, ["S06R02E0"]) == ("group", ["S06R02E0"])
    with pytest.raises(UserError, match="--test-groups names groups to hold out, which --split group does"):
        resolve_split(ds, "random", ["S06R02E0"])


def _write(tmp_path, text, name="rec.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = "time,a,b,label\n" + "".join(f"{i * 0.5},{i},{-i},{'x' if i < 6 else 'y'}\n" for i in range(10))


def test_csv_loader_windows_labels_and_timestamps(tmp_path):
    ds = load_table(_write(tmp_path, GOOD), window=4, stride=2, label_column="label")
    assert ds.values.shape == (4, 2, 4)
    np.testing.assert_array_equal(ds.values[1, 0], [2, 3, 4, 5])
    np.testing.assert_allclose(ds.timestamps[1], [1.0, 1.5, 2.0, 2.5])
    # window 2 is rows 4-7 (x, x, y, y): a tie goes to the lower class index; window 3 is rows 6-9, all y
    assert ds.class_names == ("x", "y") and ds.labels.tolist() == [0, 0, 0, 1]
    assert ds.sampling_rate == 2.0 and ds.channel_names == ("a", "b")


def test_parquet_and_irregular_iso_timestamps(tmp_path):
    df = pd.DataFrame({"time": pd.to_datetime(["2024-01-01T00:00:00", "2024-01-01T00:00:01",
                                               "2024-01-01T00:00:03", "2024-01-01T00:00:04"]),
                       "a": [1.0, 2, 3, 4], "a_sigma": [0.1, 0.2, 0.1, 0.3]})
    p = tmp_path / "r.parquet"
    df.to_parquet(p)
    ds = load_table(p, window=4, stride=4, uncertainty_suffix="_sigma")
    np.testing.assert_allclose(np.diff(ds.timestamps[0]), [1, 2, 1])
    np.testing.assert_allclose(ds.uncertainty[0, 0], [0.1, 0.2, 0.1, 0.3], rtol=1e-6)


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("time,a,b\n", "no data rows"),
    ("time,a\n0,1\n1,2\n", "missing column(s) 'b'"),
    ("time;a;b\n0;1,5;2\n", "found time;a;b (its header is separated by semicolons: edgekit reads comma-separated"),
    ("time,a,a,b\n0,1,2,3\n1,2,3,4\n", "column name(s) 'a' appear more than once"),
    ("time,a,b\n0,1,2\n1,oops,3\n", "line 3, column 'a': non-numeric value 'oops'"),
    ("time,a,b\n0,1,2\n1,nan,3\n", "line 3, column 'a': missing, NaN or infinite"),
    ("time,a,b\n0,1,2\n1,inf,3\n", "line 3, column 'a': missing, NaN or infinite"),
    ("time,a,b\n0,1,2\n1,,3\n", "line 3, column 'a': missing, NaN or infinite"),
    ("time,a,b\n0,1,2\n2,1,2\n1,1,2\n", "line 4, column 'time': time does not increase (1.0 after 2.0); a file is "
                                         "one recording: give each its own file"),
    ("time,a,b\n0,1,2\n0,1,2\n1,1,2\n", "line 3, column 'time': time does not increase (0.0 after 0.0)"),
    ("time,a,b\n0,1,2\n1,1,2\n", "fewer than one window of 4"),
    ("time,a,b\n0.000,1,2\n1,1,2\nabc,1,2\n", "line 4, column 'time': not a number of seconds: 'abc'"),
    ("time,a,b\n0,1,2\n1,1,2\nnan,1,2\n", "line 4, column 'time': not a number of seconds: 'nan'"),
    ("time,a,b\n2024-01-01T00:00:00,1,2\n12:00,1,2\n", "line 3, column 'time': not a number of seconds or an "
                                                          "ISO-8601 time: '12:00'"),
])
def test_csv_loader_errors_name_file_row_and_column(tmp_path, text, message):
    p = _write(tmp_path, text)
    with pytest.raises(UserError) as e:
        load_table(p, window=4, stride=4, channels=["a", "b"])
    assert str(p) in str(e.value) and message in str(e.value)
    assert "\n" not in str(e.value)


def test_nonpositive_uncertainty_is_refused(tmp_path):
    p = _write(tmp_path, "time,a,a_sigma\n0,1,0.1\n1,2,0\n")
    with pytest.raises(UserError, match="line 3, column 'a_sigma': uncertainty must be positive"):
        load_table(p, window=2, stride=2, uncertainty_suffix="_sigma")


def test_several_files_share_one_class_set_and_group_by_file(tmp_path):
    a = _write(tmp_path, "time,v,label\n0,1,x\n1,2,x\n", "a.csv")
    b = _write(tmp_path, "time,v,label\n0,1,z\n1,2,z\n", "b.csv")
    ds = load_tables([a, b], window=2, stride=2, label_column="label")
    assert ds.class_names == ("x", "z") and ds.labels.tolist() == [0, 1]
    assert ds.groups.tolist() == ["a.csv", "b.csv"]
    c = _write(tmp_path, "time,w,label\n0,1,x\n1,2,x\n", "c.csv")
    with pytest.raises(UserError, match="channels"):
        load_tables([a, c], window=2, stride=2, label_column="label")


def test_channels_that_are_the_time_or_label_column_or_named_twice_are_refused(tmp_path):
    from click.testing import CliRunner

    from edgekit_runtime.cli import main

    p = _write(tmp_path, GOOD)
    for channels in (["time", "a"], ["a", "label"]):
        with pytest.raises(UserError, match="is the time or label column, not a channel"):
            load_table(p, window=4, stride=2, channels=channels, label_column="label")
    for value, message in ((",", "--channels ',' names nothing"), ("a,b,a", "--channels names 'a' more than once")):
        r = CliRunner().invoke(main, ["train", str(p), "--window", "4", "--label-column", "label", "--channels", value,
                                      "--out", str(tmp_path / "c")])
        assert r.exit_code == 1 and message in r.output and r.output.count("\n") == 1, r.output
