"""Bundles: packing, verification before loading, safe archive extraction, nothing unpickled."""

import io
import json
import subprocess
import tarfile

import numpy as np
import pytest

from conftest import EDGEKIT
from edgekit.bundle import build_bundle
from edgekit_runtime.errors import UserError
from edgekit_runtime.model_dir import load_bundle, sha256_file
from edgekit_runtime.runner import Runner


@pytest.fixture(scope="module")
def bundles(basic_motions_run, tmp_path_factory):
    root = basic_motions_run["root"]
    out = tmp_path_factory.mktemp("bundles")
    build_bundle([str(root / "model")], str(out / "b"), checkpoint=str(root / "checkpoint"))
    build_bundle([str(root / "model")], str(out / "b.tar.gz"), checkpoint=str(root / "checkpoint"))
    return out


def edgekit(*args):
    return subprocess.run([EDGEKIT, *map(str, args)], capture_output=True, text=True, timeout=300)


def one_error(r):
    errors = [line for line in r.stderr.splitlines() if line.startswith("edgekit: error:")]
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(errors) == 1, r.stderr
    return errors[0]


def test_bundle_holds_model_preprocessing_eval_windows_and_a_complete_manifest(bundles, basic_motions_run):
    b = load_bundle(bundles / "b")
    m = b.manifest
    assert m["format"] == 2 and set(m["files"]) == {"model-fp32.onnx", "preprocess.json", "eval.npz"}
    assert m["input"] == {"channels": ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"],
                          "sampling_rate": 10.0, "window": 100, "stride": 100}
    windows, labels = b.eval_set()
    assert windows.shape == (40, 6, 100) and np.bincount(labels).tolist() == [10, 10, 10, 10]
    # the board runtime's accuracy on the embedded raw windows equals the compile side's test accuracy
    assert m["models"][0]["verification"]["eval_accuracy"] == basic_motions_run["summary"]["metrics"]["test_accuracy"]


def test_archive_and_directory_bundles_predict_like_the_model_directory(bundles, basic_motions_run):
    windows, _ = load_bundle(bundles / "b").eval_set()
    probs = []
    for source in (basic_motions_run["root"] / "model", bundles / "b", bundles / "b.tar.gz"):
        r = Runner(source)
        x = r.pre.prepare_windows(windows)
        probs.append(r.model.predict_proba(x))
    np.testing.assert_array_equal(probs[0], probs[1])
    np.testing.assert_array_equal(probs[0], probs[2])


def test_verify_command_accepts_good_bundles(bundles):
    for b in ("b", "b.tar.gz"):
        r = edgekit("verify", bundles / b)
        assert r.returncode == 0, r.stderr
        assert "verified (3 files)" in r.stdout and "model  model-fp32.onnx: onnx fp32" in r.stdout


def copy_bundle(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def rewrite_manifest(b, **changes):
    m = json.loads((b / "manifest.json").read_text())
    m.update(changes)
    (b / "manifest.json").write_text(json.dumps(m))


def test_a_changed_byte_is_refused(bundles, tmp_path):
    b = copy_bundle(bundles / "b", tmp_path / "b")
    data = bytearray((b / "model-fp32.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (b / "model-fp32.onnx").write_bytes(bytes(data))
    assert "model-fp32.onnx does not match its sha256" in one_error(edgekit("verify", b))
    assert "does not match its sha256" in one_error(edgekit("run", b, "-"))


def test_a_missing_file_is_refused(bundles, tmp_path):
    b = copy_bundle(bundles / "b", tmp_path / "b")
    (b / "eval.npz").unlink()
    assert "eval.npz is listed in the manifest but missing" in one_error(edgekit("verify", b))


def test_an_unknown_model_format_is_refused(bundles, tmp_path):
    b = copy_bundle(bundles / "b", tmp_path / "b")
    (b / "model.pt").write_bytes(b"not a model")
    m = json.loads((b / "manifest.json").read_text())
    m["files"]["model.pt"] = sha256_file(b / "model.pt")
    m["models"].insert(0, {"file": "model.pt", "format": "torchscript", "precision": "fp32"})
    (b / "manifest.json").write_text(json.dumps(m))
    assert "model.pt: unknown model format 'torchscript'" in one_error(edgekit("verify", b))


def test_a_newer_manifest_format_and_unlisted_preprocessing_are_refused(bundles, tmp_path):
    b = copy_bundle(bundles / "b", tmp_path / "b")
    rewrite_manifest(b, format=3)
    assert "unsupported manifest format 3" in one_error(edgekit("verify", b))
    m = json.loads((bundles / "b" / "manifest.json").read_text())
    del m["files"]["preprocess.json"]
    rewrite_manifest(b, format=2, files=m["files"])
    assert "preprocess.json is not covered" in one_error(edgekit("verify", b))


def test_pickled_evaluation_windows_are_refused_even_with_a_matching_digest(bundles, tmp_path):
    b = copy_bundle(bundles / "b", tmp_path / "b")
    np.savez(b / "eval.npz", windows=np.array([{"x": 1}], dtype=object), labels=np.zeros(1, np.int64))
    m = json.loads((b / "manifest.json").read_text())
    m["files"]["eval.npz"] = sha256_file(b / "eval.npz")
    rewrite_manifest(b, files=m["files"])
    assert "unreadable evaluation windows eval.npz" in one_error(edgekit("verify", b))


def evil_archive(path, member: tarfile.TarInfo, data=b"x"):
    with tarfile.open(path, "w:gz") as tf:
        tf.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


@pytest.mark.parametrize("name, kind, message", [
    ("../escaped", tarfile.REGTYPE, "outside the bundle"),
    ("/tmp/absolute", tarfile.REGTYPE, "outside the bundle"),
    ("b/../../escaped", tarfile.REGTYPE, "outside the bundle"),
    ("link", tarfile.SYMTYPE, "refusing link"),
    ("hard", tarfile.LNKTYPE, "refusing link"),
    ("fifo", tarfile.FIFOTYPE, "special file"),
])
def test_archive_path_traversal_links_and_special_files_are_refused(tmp_path, name, kind, message):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = 1 if kind == tarfile.REGTYPE else 0
    info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    work = tmp_path / "work"
    work.mkdir()
    archive = evil_archive(work / "evil.tar.gz", info)
    with pytest.raises(UserError, match=message):
        load_bundle(archive)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["evil.tar.gz", "work"]


def test_bundle_refuses_models_with_different_preprocessing(basic_motions_run, tmp_path):
    src = basic_motions_run["root"] / "model"
    other = copy_bundle(src, tmp_path / "other")
    pre = json.loads((other / "preprocess.json").read_text())
    pre["stride"] = 50
    (other / "preprocess.json").write_text(json.dumps(pre))
    m = json.loads((other / "manifest.json").read_text())
    m["files"]["preprocess.json"] = sha256_file(other / "preprocess.json")
    (other / "manifest.json").write_text(json.dumps(m))
    r = edgekit("bundle", src, other, "--out", tmp_path / "b.tar.gz")
    assert "preprocessing differs" in one_error(r)
    assert not (tmp_path / "b.tar.gz").exists()
