"""Hostile input streams and output targets for `edgekit run` (and `train`'s data loading): every case is a bad
row with its line number or one clear error, never a traceback, a NaN in the output or a replaced device."""

import io
import json
import math
import os
import signal
import stat
import subprocess
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EDGEKIT, interruptible
from edgekit_runtime.cli import EdgekitGroup, Terminated, main
from edgekit_runtime.errors import UserError
from edgekit_runtime.readers import live_lines
from edgekit_runtime.runner import Runner

CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
HEADER = "time," + ",".join(CHANNELS) + "\n"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A BasicMotions model trained for a few steps: these tests need its shapes, not its accuracy."""
    from edgekit.settings import DataSettings
    from edgekit.export import export_checkpoint
    from edgekit.train import train_student
    from edgekit.train_settings import TrainSettings

    root = tmp_path_factory.mktemp("hostile")
    spec = DataSettings("BasicMotions").spec()
    train_student(spec, str(root / "checkpoint"), settings=TrainSettings(steps=10, refit=False), progress=False)
    export_checkpoint(str(root / "checkpoint"), str(root / "model"))
    return root / "model"


@pytest.fixture(scope="module")
def runner(model):
    return Runner(model)


def csv_rows(n, start=0):
    rng = np.random.default_rng(start)
    return [f"{i / 10:.1f}," + ",".join(f"{v:.3f}" for v in rng.normal(size=6)) + "\n" for i in range(start, start + n)]


def jsonl_rows(n, start=0):
    rng = np.random.default_rng(start)
    return [json.dumps({"time": i / 10, **dict(zip(CHANNELS, rng.normal(size=6).tolist()))}) + "\n"
            for i in range(start, start + n)]


def invoke(*args, input=None):
    r = CliRunner().invoke(main, [str(a) for a in args], input=input)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r


def records(text):
    return [json.loads(line, parse_constant=pytest.fail) for line in text.splitlines()]  # NaN/Infinity fail


def warnings(stderr):
    return [line for line in stderr.splitlines() if line.startswith("edgekit: warning:")]


def assert_one_line_error(r, *fragments):
    errors = [line for line in r.stderr.splitlines() if line.startswith("edgekit: error:")]
    assert r.exit_code != 0 and len(errors) == 1 and "Traceback" not in r.output, r.output
    for f in fragments:
        assert f in errors[0], errors[0]


# --- row 1: --out naming a symlink, a FIFO or a device ---

def test_out_through_a_symlink_writes_its_target_and_keeps_the_link(model, tmp_path):
    (tmp_path / "in.csv").write_text(HEADER + "".join(csv_rows(200)))
    target, link = tmp_path / "real.jsonl", tmp_path / "link.jsonl"
    target.write_text("old\n")
    link.symlink_to(target)
    r = invoke("run", model, tmp_path / "in.csv", "--out", link)
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and len(records(target.read_text())) == 2


def test_out_to_a_fifo_is_written_through_not_replaced(model, tmp_path):
    (tmp_path / "in.csv").write_text(HEADER + "".join(csv_rows(300)))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()), daemon=True)
    reader.start()
    r = invoke("run", model, tmp_path / "in.csv", "--out", fifo)
    reader.join(timeout=30)
    assert r.exit_code == 0, r.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and len(records(got[0])) == 3


def test_out_to_character_devices_writes_through_them(model, tmp_path):
    (tmp_path / "in.csv").write_text(HEADER + "".join(csv_rows(200)))
    r = invoke("run", model, tmp_path / "in.csv", "--out", "/dev/null")
    assert r.exit_code == 0 and stat.S_ISCHR(os.stat("/dev/null").st_mode), r.output
    assert_one_line_error(invoke("run", model, tmp_path / "in.csv", "--out", "/dev/full"),
                          "/dev/full: cannot write (No space left on device)")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


# --- rows 2 and 13: values beyond float32's safe range, an outlier timestamp ---

@pytest.mark.parametrize("cell", ["1e300", "1e39", "3e38", "-2e15"])
def test_huge_values_are_bad_rows_never_nan_probabilities(model, tmp_path, cell):
    rows = csv_rows(300)
    rows[150] = rows[150].replace(rows[150].split(",")[3], cell, 1)
    (tmp_path / "in.csv").write_text(HEADER + "".join(rows))
    r = invoke("run", model, tmp_path / "in.csv")
    assert r.exit_code == 0, r.output
    assert warnings(r.stderr) == [f"edgekit: warning: {tmp_path / 'in.csv'}:152: bad row: value beyond ±1e+15"]
    assert len(records(r.stdout)) == 2  # the window holding the bad row is gone


def test_huge_values_in_json_lines_and_parquet_are_bad_rows(model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = jsonl_rows(300)
    rows[10] = rows[10].replace('"acc_x": ', '"acc_x": 3e38, "x": ', 1)
    (tmp_path / "in.jsonl").write_text("".join(rows))
    r = invoke("run", model, tmp_path / "in.jsonl")
    assert "in.jsonl:11: bad row: value beyond" in r.stderr and len(records(r.stdout)) == 2, r.output
    table = {c: np.random.default_rng(0).normal(size=300) for c in CHANNELS}
    table["acc_y"][20] = 1e300
    table["time"] = np.arange(300) / 10
    pq.write_table(pa.table(table), tmp_path / "in.parquet")
    r = invoke("run", model, tmp_path / "in.parquet")
    assert "in.parquet:21: bad row: value beyond" in r.stderr and len(records(r.stdout)) == 2, r.output


def test_an_outlier_timestamp_is_one_bad_row_and_the_stream_goes_on(model, tmp_path):
    rows = csv_rows(400)
    rows[50] = "1e300" + rows[50][rows[50].index(","):]
    (tmp_path / "in.csv").write_text(HEADER + "".join(rows))
    r = invoke("run", model, tmp_path / "in.csv")
    assert warnings(r.stderr) == [f"edgekit: warning: {tmp_path / 'in.csv'}:52: bad row: time 1e+300 beyond year 9999"]
    assert "400 rows, 1 bad rows skipped" in r.stderr and len(records(r.stdout)) == 3


# --- row 3: training data ---

def test_train_on_a_csv_with_a_huge_cell_names_line_and_column(tmp_path):
    p = tmp_path / "rec.csv"
    p.write_text("time,a,label\n0,1,x\n1,2,x\n2,1e300,y\n3,3,y\n")
    out = tmp_path / "ckpt"
    r = invoke("train", p, "--window", "2", "--label-column", "label", "--out", out)
    assert_one_line_error(r, str(p), "line 4", "column 'a'", "beyond")
    assert not out.exists()


# --- row 10: JSON lines with huge integers, deep nesting, booleans ---

@pytest.mark.parametrize("value, problem", [
    ("1" * 400, "non-numeric value"),
    ("1" * 5000, "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ("true", "non-numeric value"),
    ('{"a": 1}', "non-numeric value"),
])
def test_hostile_json_values_are_bad_rows(model, value, problem):
    rows = jsonl_rows(300)
    rows[120] = rows[120].replace('"gyro_z": ', f'"gyro_z": {value}, "was": ', 1)
    r = invoke("run", model, "-", "--format", "jsonl", input="".join(rows))
    assert r.exit_code == 0, r.output
    w = warnings(r.stderr)
    assert len(w) == 1 and w[0].startswith(f"edgekit: warning: <stdin>:121: bad row: {problem}"), w
    assert len(records(r.stdout)) == 2


# --- rows 11 and 12: binary bytes, bare CR, a byte-order mark ---

def test_binary_bytes_and_a_bare_cr_on_stdin_are_bad_rows(model):
    rows = [r.encode() for r in csv_rows(300)]
    rows[40] = b"\x00\xff\xfe\x81garbage,\x00\n"
    rows[140] = rows[140].replace(b",", b"\r", 1)
    rows[240] = rows[240].replace(b"\n", b"\r\n")  # CRLF is a line end, not a bad row
    r = invoke("run", model, "-", input=HEADER.encode() + b"".join(rows))
    assert r.exit_code == 0, r.output
    assert [w.split(": bad row:")[0] for w in warnings(r.stderr)] == \
        ["edgekit: warning: <stdin>:42", "edgekit: warning: <stdin>:142"]


def test_binary_garbage_as_the_header_is_one_error(model, tmp_path):
    out = tmp_path / "out.jsonl"
    r = invoke("run", model, "-", "--out", out, input=b"a,b\rc\n1,2\n")
    assert_one_line_error(r, "<stdin>:1: unreadable CSV header")
    assert not out.exists()


def test_binary_bytes_under_follow_are_bad_rows(model, tmp_path):
    p = tmp_path / "live.csv"
    p.write_bytes(HEADER.encode() + b"".join(r.encode() for r in csv_rows(150)) + b"\xff\x00\r1,2\n"
                  + b"".join(r.encode() for r in csv_rows(150, 150)))
    r = subprocess.run([EDGEKIT, "run", model, p, "--follow", "--idle-timeout", "0.3"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "live.csv:152: bad row" in r.stderr and len(records(r.stdout)) == 2


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_byte_order_mark_is_dropped(model, tmp_path, fmt):
    text = HEADER + "".join(csv_rows(200)) if fmt == "csv" else "".join(jsonl_rows(200))
    p = tmp_path / f"in.{fmt}"
    p.write_bytes(b"\xef\xbb\xbf" + text.encode())
    r = invoke("run", model, p)
    assert r.exit_code == 0 and warnings(r.stderr) == [], r.output
    assert [rec["window_end"] for rec in records(r.stdout)] == pytest.approx([9.9, 19.9])  # the time column was found


# --- rows 14 and 15: --follow never parses half a line; it notices copytruncate ---

def test_follow_never_parses_an_unfinished_line(model, tmp_path):
    p = tmp_path / "live.csv"
    rows = csv_rows(300)
    p.write_text(HEADER + "".join(rows[:199]) + rows[199][:-6])  # the writer stalls mid-line: "…,0." is not 0.0
    r = subprocess.run([EDGEKIT, "run", model, p, "--follow", "--idle-timeout", "0.5"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert warnings(r.stderr) == [f"edgekit: warning: {p}:201: bad row: unfinished last line "
                                  "(no line end within --idle-timeout 0.5 s)"]
    assert len(records(r.stdout)) == 1  # window 2 would need the unfinished row


def test_follow_rereads_a_file_truncated_by_copytruncate(model, tmp_path):
    p = tmp_path / "live.csv"
    rows = csv_rows(500)
    p.write_text(HEADER + "".join(rows[:300]))
    proc = subprocess.Popen([EDGEKIT, "run", str(model), str(p), "--follow"], preexec_fn=interruptible,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        got = [json.loads(proc.stdout.readline()) for _ in range(3)]
        with open(p, "r+") as f:  # logrotate's copytruncate: the writer goes on at the start of the emptied file
            f.truncate(0)
            f.write("".join(rows[300:500]))
        got += [json.loads(proc.stdout.readline()) for _ in range(2)]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert [r["window_end"] for r in got] == pytest.approx([9.9, 19.9, 29.9, 39.9, 49.9])
    assert f"{p}: the file shrank" in err and "bad row" not in err and "Traceback" not in err, err


# --- row 16: option validation ---

@pytest.mark.parametrize("args", [
    ["run", "{model}", "x.csv", "--threads", "100000"],
    ["run", "{model}", "x.csv", "--threads", "0"],
    ["run", "{model}", "x.csv", "--stride", "0"],
    ["run", "{model}", "x.csv", "--batch", "-1"],
    ["bench", "{model}", "--windows", "0"],
    ["bench", "{model}", "--windows", "-5"],
    ["train", "BasicMotions", "--epochs", "0"],
    ["train", "BasicMotions", "--epochs", "-1"],
    ["train", "BasicMotions", "--stride", "0"],
])
def test_out_of_range_options_are_refused(model, args):
    r = invoke(*[a.format(model=model) for a in args])
    assert r.exit_code == 2 and "Invalid value for" in r.output and "is not in the range" in r.output, r.output


# --- row 17: every key wrong ---

def test_json_lines_with_every_key_wrong_are_one_error(model, tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text("".join(line.replace('"acc_', '"ACC_') for line in jsonl_rows(4000)))
    out = tmp_path / "out.jsonl"
    r = invoke("run", model, p, "--out", out)
    assert_one_line_error(r, f"{p}:1: missing field(s) acc_x, acc_y, acc_z in the first object")
    assert warnings(r.stderr) == [] and not out.exists() and list(tmp_path.iterdir()) == [p]


# --- row 18: a line with no end ---

def test_a_line_over_the_limit_is_refused_from_a_file(model, tmp_path):
    p = tmp_path / "in.csv"
    p.write_text(HEADER + "".join(csv_rows(10)) + "1," * 1_000_000)
    out = tmp_path / "out.jsonl"
    r = invoke("run", model, p, "--out", out)
    assert_one_line_error(r, f"{p}:12: line longer than 1048576 characters")
    assert not out.exists()


def test_200_mb_without_a_newline_on_stdin_is_refused_quickly(model):
    proc = subprocess.Popen([EDGEKIT, "run", str(model), "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    t0 = time.monotonic()
    try:
        for _ in range(200):
            proc.stdin.write(b"1," * (1 << 19))  # 1 MiB
        proc.stdin.close()
    except BrokenPipeError:  # refused: it stopped reading
        pass
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "<stdin>:1: line longer than 1048576 characters" in err.decode(), err
    assert time.monotonic() - t0 < 30  # reading it all took 4 minutes


def test_a_line_with_no_end_is_read_in_bounded_memory():
    import tracemalloc

    class Endless(io.RawIOBase):  # 200 MB of one line, made as it is read
        left = 200 << 20

        def read(self, n=-1):
            n = min(n, self.left)
            self.left -= n
            return b"7" * n

    tracemalloc.start()
    try:
        with pytest.raises(UserError, match="endless:1: line longer than 1048576 characters"):
            for _ in live_lines(Endless(), "endless"):
                pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak  # a few times the 1 MiB limit, not the 200 MB line


# --- row 19: SIGTERM cleans up like Ctrl-C ---

def _terminate_when(proc, appeared, timeout=120):
    t0 = time.monotonic()
    while not appeared():
        assert proc.poll() is None and time.monotonic() - t0 < timeout, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return err


def test_sigterm_during_run_removes_the_temporary_output(model, tmp_path):
    p = tmp_path / "in.csv"
    p.write_text(HEADER + "".join(csv_rows(200_000)))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([EDGEKIT, "run", str(model), str(p), "--out", str(out_dir / "pred.jsonl")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = _terminate_when(proc, lambda: any(out_dir.iterdir()))
    assert proc.returncode == 143 and "edgekit: terminated" in err and "Traceback" not in err, err
    assert list(out_dir.iterdir()) == []


def test_sigterm_during_export_removes_the_staging_directory(model, tmp_path):
    proc = subprocess.Popen([EDGEKIT, "export", str(model.parent / "checkpoint"), "--out", str(tmp_path / "m")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = _terminate_when(proc, lambda: any(tmp_path.iterdir()))
    assert proc.returncode == 143 and "edgekit: terminated" in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("interrupt, code, word", [(Terminated, 143, "terminated"),
                                                    (KeyboardInterrupt, 130, "interrupted")])
def test_an_interrupt_a_library_turns_into_its_own_error_still_ends_as_an_interrupt(interrupt, code, word):
    # a SIGTERM that lands in one of torch's lazy imports comes back as the exporter's own error
    group = EdgekitGroup()

    @group.command()
    def export():
        try:
            raise interrupt()
        except KeyboardInterrupt as e:
            raise RuntimeError("Failed to export the model with torch.export") from e

    r = CliRunner().invoke(group, ["export"])
    assert r.exit_code == code and r.output == f"edgekit: {word}\n", r.output


# --- property: malformed CSV and JSON-lines streams ---

NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**500, 10**500),
                    st.sampled_from(["1e300", "3e38", "-1e39", "0.", "nan", "true", ""]))
CELLS = st.one_of(NUMBERS.map(str), st.text(max_size=8), st.binary(max_size=8).map(lambda b: b.decode("latin-1")))
JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=5)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                           max_leaves=6)


@st.composite
def hostile_streams(draw):
    """Good rows (enough for a few windows) with hostile lines, bytes and line ends mixed in, as raw bytes."""
    fmt = draw(st.sampled_from(["csv", "jsonl"]))
    good = csv_rows(250) if fmt == "csv" else jsonl_rows(250)
    lines = [line.encode() for line in good]
    for _ in range(draw(st.integers(1, 6))):
        if fmt == "csv":
            cells = draw(st.lists(CELLS, min_size=1, max_size=8))
            bad = ",".join(cells)
        else:
            obj = {c: draw(JSON_VALUES) for c in draw(st.lists(st.sampled_from(["time", *CHANNELS]), max_size=7))}
            bad = draw(st.one_of(st.just(json.dumps(obj)), st.text(max_size=20)))
        raw = bad.encode("utf-8", "surrogatepass") + draw(st.sampled_from([b"\n", b"\r\n", b"\r", b"\x00\n"]))
        lines.insert(draw(st.integers(0, len(lines))), raw)
    prefix = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    header = HEADER.encode() if fmt == "csv" else b""
    return prefix + header + b"".join(lines)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=hostile_streams())
def test_property_hostile_streams_never_crash_or_write_nan(runner, data):
    try:
        recs = list(runner.run_stream(live_lines(io.BytesIO(data), "mem"), "mem"))
    except UserError as e:  # the CLI's one-line error and exit 1
        assert "\n" not in str(e)
        return
    for rec in recs:
        json.dumps(rec, allow_nan=False)  # valid JSON: no NaN or infinity anywhere
        assert all(math.isfinite(v) for v in rec["probabilities"].values())
