"""The runtime must work on a board with no torch, onnx, compile side or training dependencies."""

import json
import subprocess
import sys

from conftest import REPO

CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
BLOCKED = ["torch", "onnx", "onnxscript", "edgekit", "edgekit_exporters", "aeon", "pandas", "sklearn", "tqdm"]

# Runs the `edgekit` CLI in a fresh interpreter where importing any blocked package raises ImportError,
# then checks none of them was imported. `edgekit` (the compile side) is blocked too, so its entry-point
# commands fail to load, as on a board where only edgekit-runtime is installed.
LAUNCHER = """
import sys, importlib.abc
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked on the board: " + name)
sys.meta_path.insert(0, Block())
from edgekit_runtime.cli import main
try:
    main(sys.argv[1:])
finally:
    leaked = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    assert not leaked, leaked
"""


def board(*args, stdin=None, blocked=BLOCKED):
    return subprocess.run([sys.executable, "-c", LAUNCHER.format(blocked=blocked), *args], input=stdin,
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def test_help_lists_only_board_commands_without_the_compile_side():
    r = board("--help")
    assert r.returncode == 0, r.stderr
    commands = r.stdout.split("Commands:")[1]
    for name in ("run", "bench", "info", "verify"):
        assert f"  {name} " in commands
    for name in ("train", "export", "data", "bundle"):
        assert f"  {name} " not in commands


def test_help_lists_compile_commands_when_installed():
    r = subprocess.run([sys.executable, "-m", "edgekit_runtime.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for name in ("run", "bench", "info", "verify", "train", "export", "data", "bundle"):
        assert f"  {name} " in r.stdout


def test_run_bench_and_info_work_without_torch(basic_motions_run, tmp_path):
    model = str(basic_motions_run["root"] / "model")
    csv = tmp_path / "in.csv"
    rng = __import__("numpy").random.default_rng(0)
    rows = "\n".join(",".join(f"{v:.4f}" for v in [i / 10, *rng.normal(size=6)]) for i in range(250))
    csv.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n" + rows + "\n")

    r = board("run", model, str(csv))
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(records) == 2 and records[1]["window_end"] == 19.9

    # a model that neither filters nor resamples needs no numba (it took the process from 67 to 200 MB)
    r = board("run", model, str(csv), blocked=[*BLOCKED, "numba", "llvmlite"])
    assert r.returncode == 0, r.stderr
    again = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(a["class"], a["probabilities"]) for a in again] == [(a["class"], a["probabilities"]) for a in records]

    r = board("bench", model, "--quick", "--json", str(tmp_path / "b.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "b.json").read_text())["models"][0]["latency"]["median_ms"] > 0

    r = board("info", model, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["classes"] == ["badminton", "running", "standing", "walking"]


def test_bundle_verify_and_stdin_run_work_without_torch(basic_motions_run, tmp_path):
    from edgekit.bundle import build_bundle

    root = basic_motions_run["root"]
    bundle = tmp_path / "b.tar.gz"
    build_bundle([str(root / "model")], str(bundle), checkpoint=str(root / "checkpoint"))
    r = board("verify", str(bundle))
    assert r.returncode == 0 and "verified (3 files)" in r.stdout, r.stderr

    rng = __import__("numpy").random.default_rng(0)
    lines = [json.dumps({"time": i / 10, **dict(zip(CHANNELS, rng.normal(size=6).tolist()))}) for i in range(100)]
    r = board("run", str(bundle), "-", stdin="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["window_end"] for line in r.stdout.splitlines()] == [9.9]
