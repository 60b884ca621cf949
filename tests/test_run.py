"""`edgekit run`: stdin (CSV and JSON lines), directories, --follow, --only-changes, bad rows, flat memory."""

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import EDGEKIT, interruptible
from edgekit_runtime.runner import Runner

CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]


@pytest.fixture(scope="module")
def model(basic_motions_run):
    return basic_motions_run["root"] / "model"


@pytest.fixture(scope="module")
def test_csv(basic_motions_run, tmp_path_factory):
    """The BasicMotions test split as one CSV stream: 40 windows of 100 samples, 10 per class."""
    from click.testing import CliRunner

    from edgekit_runtime.cli import main

    p = tmp_path_factory.mktemp("run") / "test.csv"
    r = CliRunner().invoke(main, ["data", "to-csv", "BasicMotions", "--group", "test", str(p)])
    assert r.exit_code == 0, r.output
    return p


def edgekit(*args, stdin=None):
    return subprocess.run([EDGEKIT, *map(str, args)], input=stdin, capture_output=True, text=True, timeout=300)


def records(stdout):
    return [json.loads(line) for line in stdout.splitlines()]


def to_jsonl(csv_text):
    header, *rows = csv_text.splitlines()
    names = header.split(",")
    out = []
    for row in rows:
        cells = dict(zip(names, row.split(",")))
        out.append(json.dumps({k: (v if k == "label" else float(v)) for k, v in cells.items()}))
    return "\n".join(out) + "\n"


def test_stdin_csv_and_json_lines_give_the_file_results(model, test_csv):
    from_file = records(edgekit("run", model, test_csv).stdout)
    assert len(from_file) == 40
    r = edgekit("run", model, "-", stdin=test_csv.read_text())
    assert r.returncode == 0, r.stderr
    from_stdin = records(r.stdout)
    r = edgekit("run", model, "-", stdin=to_jsonl(test_csv.read_text()))
    assert r.returncode == 0, r.stderr
    from_jsonl = records(r.stdout)
    strip = lambda recs: [{k: v for k, v in rec.items() if k not in ("source", "latency_ms")} for rec in recs]  # noqa
    assert strip(from_stdin) == strip(from_file) == strip(from_jsonl)
    assert from_stdin[0]["source"] == "<stdin>"


def test_bad_json_lines_are_reported_with_line_numbers_and_break_windows(model, test_csv):
    lines = to_jsonl(test_csv.read_text()).splitlines()
    lines[150] = "{not json"
    lines[250] = json.dumps({"time": 25.0, "acc_x": 1.0})
    r = edgekit("run", model, "-", stdin="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    assert "<stdin>:151: bad row: not valid JSON" in r.stderr
    assert "<stdin>:251: bad row: missing field(s) acc_y, acc_z" in r.stderr
    assert "4000 rows, 2 bad rows skipped" in r.stderr
    ends = [rec["window_end"] for rec in records(r.stdout)]
    # the bad rows were the samples at 15.0 s and 25.0 s: no window may span either, and the stream restarts
    # after each, so later windows still come
    assert not any(e - 9.9 <= bad <= e for e in ends for bad in (15.0, 25.0))
    assert ends[0] == pytest.approx(9.9) and len(ends) >= 36


def test_strict_stops_at_the_first_bad_row(model, test_csv):
    text = test_csv.read_text().splitlines()
    text[5] = "0.4,1,2,3"
    r = edgekit("run", model, "-", "--strict", stdin="\n".join(text) + "\n")
    errors = [line for line in r.stderr.splitlines() if line.startswith("edgekit: error:")]
    assert r.returncode == 1 and errors == ["edgekit: error: <stdin>:6: bad row: expected 8 columns, got 4"]


def test_only_changes_writes_the_class_changes(model, test_csv):
    full = [rec["class"] for rec in records(edgekit("run", model, test_csv).stdout)]
    changes = records(edgekit("run", model, test_csv, "--only-changes").stdout)
    expected = [c for i, c in enumerate(full) if i == 0 or c != full[i - 1]]
    assert [rec["class"] for rec in changes] == expected and 4 <= len(expected) < len(full)


def test_a_directory_of_csv_and_json_lines(model, test_csv, tmp_path):
    lines = test_csv.read_text().splitlines()
    (tmp_path / "a.csv").write_text("\n".join(lines[:1001]) + "\n")  # 10 windows
    (tmp_path / "b.jsonl").write_text(to_jsonl("\n".join([lines[0], *lines[1001:1501]])))  # 5 windows
    (tmp_path / "notes.txt").write_text("ignored")
    out = tmp_path / "out" / "pred.jsonl"
    r = edgekit("run", model, tmp_path, "--out", out)
    assert r.returncode == 0, r.stderr
    sources = [rec["source"] for rec in records(out.read_text())]
    assert sources.count(str(tmp_path / "a.csv")) == 10 and sources.count(str(tmp_path / "b.jsonl")) == 5


def test_follow_reads_rows_appended_to_a_growing_file(model, test_csv, tmp_path):
    lines = test_csv.read_text().splitlines(keepends=True)
    growing = tmp_path / "live.csv"
    growing.write_text("".join(lines[:301]))  # 3 windows
    p = subprocess.Popen([EDGEKIT, "run", str(model), str(growing), "--follow"], preexec_fn=interruptible,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = [json.loads(p.stdout.readline()) for _ in range(3)]  # the first part has been read
        with open(growing, "a") as f:
            f.write("".join(lines[301:450]))
            f.write(lines[450][:10])  # half a row: must wait for the rest, not be read as a bad row
            f.flush()
            time.sleep(0.5)
            f.write(lines[450][10:] + "".join(lines[451:501]))
        got += [json.loads(p.stdout.readline()) for _ in range(2)]
    finally:
        p.send_signal(signal.SIGINT)  # a follower runs until stopped
        _, err = p.communicate(timeout=60)
    assert [r["window_end"] for r in got] == pytest.approx([9.9, 19.9, 29.9, 39.9, 49.9])
    assert p.returncode == 130 and "bad row" not in err and "Traceback" not in err, err


def test_follow_with_idle_timeout_ends_when_the_file_stops_growing(model, test_csv, tmp_path):
    r = edgekit("run", model, test_csv, "--follow", "--idle-timeout", "0.3")
    assert r.returncode == 0 and len(records(r.stdout)) == 40
    assert "4000 rows, 0 bad rows skipped, 40 windows" in r.stderr


def test_follow_needs_a_file(model, tmp_path):
    r = edgekit("run", model, tmp_path, "--follow")
    assert r.returncode == 1 and "--follow needs a single file" in r.stderr


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024


def test_soak_a_million_samples_in_flat_memory(model, capsys):
    """≥ 1M samples through the streaming path (reader, preprocessing, model): memory must not grow with the
    length of the stream."""
    n = 1_000_000
    rng = np.random.default_rng(0)
    block = [",".join(f"{v:.3f}" for v in row) for row in rng.normal(size=(1000, 6))]
    rss = {}

    def lines():
        yield "time," + ",".join(CHANNELS) + "\n"
        for i in range(n):
            if i == 200_000 or i == n - 1:
                rss[i] = _rss_bytes()
            yield f"{i / 10:.1f},{block[i % 1000]}\n"

    runner = Runner(model, batch=32)
    count = sum(1 for _ in runner.run_stream(lines(), "soak"))
    assert count == n // 100
    growth = rss[n - 1] - rss[200_000]
    print(f"soak: {n} samples, RSS {rss[200_000] / 2**20:.1f} -> {rss[n - 1] / 2**20:.1f} MiB")
    assert growth < 8 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over {n - 200_000} samples"


def test_parquet_input_gives_the_csv_results_and_reports_bad_rows(model, test_csv, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    header, *rows = test_csv.read_text().splitlines()
    cols = list(zip(*[r.split(",") for r in rows]))
    table = {name: [float(v) for v in col] if name != "label" else list(col)
             for name, col in zip(header.split(","), cols)}
    pq.write_table(pa.table(table), tmp_path / "test.parquet")
    strip = lambda recs: [{k: v for k, v in r.items() if k not in ("source", "latency_ms")} for r in recs]  # noqa
    r = edgekit("run", model, tmp_path / "test.parquet", "--label-column", "label")
    assert r.returncode == 0, r.stderr
    assert strip(records(r.stdout)) == strip(records(edgekit("run", model, test_csv, "--label-column", "label").stdout))
    table["acc_x"][150] = float("nan")
    pq.write_table(pa.table(table), tmp_path / "bad.parquet")
    r = edgekit("run", model, tmp_path / "bad.parquet")
    assert f"{tmp_path / 'bad.parquet'}:151: bad row: NaN or infinite value" in r.stderr
    assert len(records(r.stdout)) == 39  # the window holding the bad row is gone; the stream restarts after it


def test_an_output_that_would_replace_an_input_is_refused(model, test_csv, tmp_path):
    """--out naming the recording itself, or a file in the directory being read (read as a recording next time),
    and the same for `data to-csv` and `bundle`: one-line errors, the inputs untouched."""
    from click.testing import CliRunner

    from edgekit_runtime.cli import main

    recording = tmp_path / "data" / "rec.csv"
    recording.parent.mkdir()
    recording.write_bytes(test_csv.read_bytes())
    cases = [["run", str(model), str(recording), "--out", str(recording)],
             ["run", str(model), str(recording.parent), "--out", str(recording.parent / "predictions.jsonl")],
             ["data", "to-csv", str(recording.parent), str(recording), "--window", "100", "--label-column", "label"],
             ["bundle", str(model), "--out", str(model / "b.tar.gz")]]
    for args in cases:
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1 and "the input" in r.output and r.output.count("\n") == 1, (args, r.output)
    assert recording.read_bytes() == test_csv.read_bytes() and sorted(recording.parent.iterdir()) == [recording]
    assert not (model / "b.tar.gz").exists()


def test_input_with_no_good_row_fails_and_unknown_labels_are_named(model, test_csv, tmp_path):
    header, *rows = test_csv.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([header] + [",".join(["x"] * len(header.split(",")))] * 150) + "\n")
    r = edgekit("run", model, bad, "--out", tmp_path / "p.jsonl")
    assert r.returncode == 1 and "all 150 rows are bad (reasons above): nothing was classified" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "p.jsonl").exists()

    relabelled = tmp_path / "relabelled.csv"  # labels the model does not know count as wrong, and the summary says so
    relabelled.write_text("\n".join([header] + [row.rsplit(",", 1)[0] + ",Jumping" for row in rows[:1000]]) + "\n")
    r = edgekit("run", model, relabelled, "--label-column", "label")
    assert r.returncode == 0 and "10 windows' labels are none of the model's classes" in r.stderr, r.stderr


@pytest.mark.parametrize("args", [["--follow", "--idle-timeout", "nan"], ["--idle-timeout", "1"]])
def test_idle_timeout_is_a_number_and_needs_follow(model, test_csv, args):
    r = edgekit("run", model, test_csv, *args)
    assert r.returncode == 1 and "--idle-timeout takes a number of seconds, and applies with --follow only" in r.stderr
