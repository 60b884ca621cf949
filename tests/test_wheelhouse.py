"""`edgekit wheelhouse`: an offline install of the runtime for another platform; errors are one line and leave no
half-written directory."""

import json
import subprocess
import sys

import pytest

import edgekit.wheelhouse as wh
from edgekit_runtime.errors import UserError
from test_cli_errors import assert_one_line_error, edgekit


def test_bad_settings_are_one_line_errors(tmp_path):
    assert_one_line_error(edgekit("wheelhouse", "--python", "311", "--out", tmp_path / "w"), "--python", "3.11")
    r = edgekit("wheelhouse", "--platform", "riscv64", "--out", tmp_path / "w")
    assert r.returncode == 2 and "riscv64" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "w").exists()


def test_a_failed_download_leaves_no_wheelhouse(tmp_path, monkeypatch):
    monkeypatch.setattr(wh, "runtime_requirements", lambda litert: ["edgekit-no-such-package-zz9==0.0"])
    with pytest.raises(UserError, match="failed: "):
        wh.build_wheelhouse(str(tmp_path / "w"))
    assert not (tmp_path / "w").exists() and list(tmp_path.iterdir()) == []


def test_requirements_follow_the_runtime_package():
    plain, with_litert = wh.runtime_requirements(False), wh.runtime_requirements(True)
    assert any(r.startswith("onnxruntime") for r in plain) and not any("litert" in r for r in plain)
    assert set(plain) < set(with_litert) and any(r.startswith("ai-edge-litert") for r in with_litert)


@pytest.mark.slow
def test_a_board_without_network_installs_the_runtime_from_the_wheelhouse_and_verifies_a_bundle(
        basic_motions_run, tmp_path):
    """Built for this machine's platform, installed into a fresh venv with the index switched off."""
    import platform

    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    r = edgekit("wheelhouse", "--platform", platform.machine(), "--python", python, "--no-litert",
                "--out", tmp_path / "wh")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "wh" / "wheelhouse.json").read_text())
    assert any(w.startswith("edgekit_runtime-") for w in manifest["wheels"])
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "board")], check=True)
    pip = tmp_path / "board" / "bin" / "pip"
    subprocess.run([pip, "install", "-q", "--no-index", "--find-links", tmp_path / "wh", "edgekit-runtime"],
                   check=True, timeout=600)
    r = subprocess.run([tmp_path / "board" / "bin" / "edgekit", "verify", basic_motions_run["root"] / "model"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "verified" in r.stdout and "shapes match" in r.stdout, r.stderr
