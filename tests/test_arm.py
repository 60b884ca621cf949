"""The board runtime on arm64 (`make test-arm`): Debian 12's arm64 Python 3.11 under qemu-user, with the real aarch64
wheels of edgekit-runtime's dependencies, as a Raspberry Pi 4 (Cortex-A72) and a Raspberry Pi 5 (Cortex-A76) CPU.

`verify`, `info`, `run` (ONNX and TFLite, fp32 and int8) and `bench --quick` run on a bundle built here, and every
prediction is compared with the same command on this x86 machine: classes equal, probabilities within 1e-5, except
ONNX int8 (x86 and ARM integer kernels round differently: logits differ by up to ~0.08, see
../shared/design/AARCH64.md) within INT8_ONNX_TOLERANCE. A second environment with `tflite-runtime` (2.14, numpy < 2)
instead of `ai-edge-litert` runs the TFLite models through the runtime's fallback (an older TensorFlow Lite:
probabilities within FALLBACK_TOLERANCE). Timings under emulation are
not speed and are not reported.

The root file system (debootstrap's first stage, its packages unpacked: binfmt_misc is not needed) and the
installed wheels are cached in $EDGEKIT_ARM_CACHE (default ~/.cache/edgekit/arm64). Facts the harness handles:
onnxruntime reads /proc/cpuinfo at import and crashes on the host's x86 one, so each CPU model gets a prefix
directory whose proc/cpuinfo describes it (its system directories link to the root file system); numba compiles
for the CPU in /proc/cpuinfo, so each CPU model has its own cache; `bench` re-executes sys.executable, which is a
shell wrapper that starts qemu again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EDGEKIT

pytestmark = pytest.mark.arm

CACHE = Path(os.environ.get("EDGEKIT_ARM_CACHE") or Path.home() / ".cache" / "edgekit" / "arm64")
MIRROR = os.environ.get("EDGEKIT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
QEMU = shutil.which("qemu-aarch64-static") or "/usr/bin/qemu-aarch64-static"
DEBOOTSTRAP = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
CPUS = {"cortex-a72": "0xd08", "cortex-a76": "0xd0b"}  # ARM's part numbers (Raspberry Pi 4, Raspberry Pi 5)
MODELS = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("litert", "fp32"), ("litert", "int8")]
INT8_ONNX_TOLERANCE = 0.05  # probabilities; no class may change
# tflite-runtime 2.14 is an older TensorFlow Lite than x86's ai-edge-litert: fp32 probabilities differ by ~1e-5
FALLBACK_TOLERANCE = 1e-4
AARCH64_TAGS = [a for tag in ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64",
                              "manylinux_2_34_aarch64") for a in ("--platform", tag)]
TIMEOUT = 900  # one command under emulation


def _missing() -> str | None:
    for tool in (QEMU, DEBOOTSTRAP, "/usr/bin/dpkg-deb"):
        if not Path(tool).is_file():
            return f"{tool} is missing (`make test-arm` installs qemu-user-static and debootstrap as root)"
    return None


def _run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))[:300]} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope="session")
def rootfs():
    """Debian 12 arm64 with python3 and libgomp1, built once."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    root = CACHE / "rootfs"
    if (root / ".complete").exists():
        return root
    tmp = CACHE / "rootfs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    _run([DEBOOTSTRAP, "--foreign", "--arch=arm64", "--variant=minbase", "--include=python3,libgomp1",
          "bookworm", tmp, MIRROR], timeout=1800)
    # the second stage would need binfmt_misc; unpacking every package is all that running Python needs
    # (--keep-directory-symlink keeps the merged-/usr links bin, lib, sbin)
    for deb in sorted((tmp / "var/cache/apt/archives").glob("*.deb")):
        _run(["sh", "-c", f"dpkg-deb --fsys-tarfile '{deb}' | tar -x -C '{tmp}' --keep-directory-symlink"])
    if (tmp / "proc").is_symlink():  # debootstrap links it to the host's /proc; the prefixes bring their own
        (tmp / "proc").unlink()
    (tmp / ".complete").touch()
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def _site(name: str, wheelhouse, extra: list[str]) -> Path:
    """edgekit-runtime and its aarch64 wheels installed into a directory for PYTHONPATH, cached per wheelhouse."""
    site = CACHE / f"site-{name}-{wheelhouse.rid}"
    if (site / ".complete").exists():
        return site
    shutil.rmtree(site, ignore_errors=True)
    runtime_wheel = next(wheelhouse.path.glob("edgekit_runtime-*.whl"))
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-conflicts", "--target", site,
          "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", *AARCH64_TAGS,
          "--find-links", wheelhouse.path, runtime_wheel, *extra], timeout=1800)
    (site / ".complete").touch()
    return site


@pytest.fixture(scope="session")
def sites(rootfs):
    """Two environments: the runtime with ai-edge-litert (what `edgekit wheelhouse` gives a board), and with
    tflite-runtime 2.14 (its cp311 aarch64 wheel needs numpy < 2) instead."""
    from edgekit.deploy import cached_wheelhouse

    wh = cached_wheelhouse("aarch64", "3.11", litert=True)
    return {"litert": _site("litert", wh, ["ai-edge-litert>=1.2"]),
            "tflite-runtime": _site("tflite-runtime", wh, ["tflite-runtime==2.14.0", "numpy<2"])}


def _prefix(rootfs: Path, cpu: str, tmp: Path) -> Path:
    """A qemu -L prefix for one CPU model: an ARM proc/cpuinfo, and links to the root file system's system
    directories only (a linked /tmp would make realpath() send the tests' files into the root file system)."""
    prefix = tmp / f"prefix-{cpu}"
    if prefix.exists():
        return prefix
    (prefix / "proc").mkdir(parents=True)
    for name in ("usr", "bin", "sbin", "lib", "etc"):
        (prefix / name).symlink_to(rootfs / name)
    (prefix / "proc" / "cpuinfo").write_text(
        "".join(f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
                f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {CPUS[cpu]}\n"
                "CPU revision\t: 3\n\n" for i in range(4)))
    return prefix


@pytest.fixture(scope="session")
def board(rootfs, sites, tmp_path_factory):
    """board(cpu, env) -> the path of an x86 shell wrapper that runs the arm64 Python (also as sys.executable, so
    that `bench` can re-execute it)."""
    tmp = tmp_path_factory.mktemp("arm")

    def python(cpu: str, env: str = "litert") -> Path:
        wrapper = tmp / f"python-{cpu}-{env}"
        if not wrapper.exists():
            prefix = _prefix(rootfs, cpu, tmp)
            wrapper.write_text(
                "#!/bin/sh\n"
                f"export PYTHONHOME=/usr PYTHONPATH='{sites[env]}' NUMBA_CACHE_DIR='{CACHE / ('numba-' + cpu)}'\n"
                f"exec '{QEMU}' -cpu {cpu} -L '{prefix}' -0 \"$0\" '{rootfs}/usr/bin/python3.11' \"$@\"\n")
            wrapper.chmod(0o755)
        return wrapper

    return python


@pytest.fixture(scope="session")
def arm_bundle(basic_motions_run, basic_motions_tflite, tmp_path_factory):
    """One bundle with ONNX and TFLite models in fp32 and int8, and BasicMotions' test split as a CSV stream."""
    from edgekit.bundle import build_bundle
    from edgekit.quantize import quantize_checkpoint
    from edgekit.settings import ExportSettings

    root = tmp_path_factory.mktemp("arm_bundle")
    ckpt = str(basic_motions_run["root"] / "checkpoint")
    quantize_checkpoint(ckpt, str(root / "onnx-int8"), progress=False)
    quantize_checkpoint(ckpt, str(root / "tflite-int8"), ExportSettings("tflite"), progress=False)
    build_bundle([str(basic_motions_run["root"] / "model"), str(basic_motions_tflite), str(root / "onnx-int8"),
                  str(root / "tflite-int8")], str(root / "bundle"), checkpoint=ckpt)
    _run([EDGEKIT, "data", "to-csv", "BasicMotions", "--group", "test", root / "test.csv"])
    return root / "bundle", root / "test.csv"


def _edgekit(python, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "edgekit_runtime.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=TIMEOUT)


def _predictions(cmd_prefix, bundle, csv, backend, precision, out: Path) -> list[dict]:
    r = subprocess.run([*map(str, cmd_prefix), "run", str(bundle), str(csv), "--backend", backend, "--precision",
                        precision, "--label-column", "label", "--out", str(out)], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-2000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def _assert_same(arm: list[dict], x86: list[dict], tolerance: float) -> None:
    assert len(arm) == len(x86) == 40
    for a, b in zip(arm, x86):
        assert a["class"] == b["class"] and a["window_end"] == b["window_end"]
        diff = max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in b["probabilities"])
        assert diff <= tolerance, (a, b)


@pytest.mark.parametrize("cpu", list(CPUS))
def test_verify_info_and_every_model_agree_with_x86(cpu, board, arm_bundle, tmp_path):
    bundle, csv = arm_bundle
    python = board(cpu)
    r = _edgekit(python, "verify", bundle)
    assert r.returncode == 0 and "verified" in r.stdout, r.stderr[-2000:]
    r = _edgekit(python, "info", bundle, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(json.loads(r.stdout)["models"]) == 4
    for backend, precision in MODELS:
        x86 = _predictions([EDGEKIT], bundle, csv, backend, precision, tmp_path / f"x86-{backend}-{precision}.jsonl")
        arm = _predictions([python, "-m", "edgekit_runtime.cli"], bundle, csv, backend, precision,
                           tmp_path / f"arm-{backend}-{precision}.jsonl")
        tolerance = INT8_ONNX_TOLERANCE if (backend, precision) == ("onnxruntime", "int8") else 1e-5
        _assert_same(arm, x86, tolerance)


@pytest.mark.parametrize("cpu", list(CPUS))
def test_bench_quick_measures_every_model(cpu, board, arm_bundle, tmp_path):
    bundle, _ = arm_bundle
    r = _edgekit(board(cpu), "bench", bundle, "--quick", "--json", tmp_path / "bench.json")
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["hardware"]["arch"] == "aarch64" and result["cold_start"]["cached_s"] > 0
    assert sorted((m["format"], m["precision"]) for m in result["models"]) == \
        [("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8")]
    for m in result["models"]:
        assert m["accuracy"] == pytest.approx(m["accuracy_at_bundling"], abs=1e-9)


def test_tflite_runtime_runs_the_tflite_models_when_litert_is_absent(board, arm_bundle, tmp_path):
    bundle, csv = arm_bundle
    python = board("cortex-a72", "tflite-runtime")
    r = subprocess.run([str(python), "-c", "import ai_edge_litert"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode != 0  # the fallback is what runs
    for precision in ("fp32", "int8"):
        x86 = _predictions([EDGEKIT], bundle, csv, "litert", precision, tmp_path / f"x86-{precision}.jsonl")
        arm = _predictions([python, "-m", "edgekit_runtime.cli"], bundle, csv, "litert", precision,
                           tmp_path / f"arm-{precision}.jsonl")
        _assert_same(arm, x86, FALLBACK_TOLERANCE)
