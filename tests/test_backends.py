"""Inference backends: onnxruntime and LiteRT run the same bundle to the same answers; the choice follows what
the bundle holds and what is installed, and can be overridden."""

import dataclasses
import json
import subprocess

import numpy as np
import pytest

from conftest import EDGEKIT
from edgekit.bundle import build_bundle
from edgekit_runtime import engine
from edgekit_runtime.errors import UserError
from edgekit_runtime.model_dir import load_bundle
from edgekit_runtime.runner import Runner


@pytest.fixture(scope="module")
def two_format_bundle(basic_motions_run, basic_motions_tflite, tmp_path_factory):
    root, tflite = basic_motions_run["root"], str(basic_motions_tflite)
    out = tmp_path_factory.mktemp("backends")
    build_bundle([str(root / "model"), tflite], str(out / "b.tar.gz"), checkpoint=str(root / "checkpoint"))
    build_bundle([tflite], str(out / "tflite-only"))
    return out


def test_both_backends_give_the_same_probabilities(two_format_bundle):
    b = two_format_bundle / "b.tar.gz"
    windows, labels = load_bundle(b).eval_set()
    ort, lite = Runner(b, backend="onnxruntime"), Runner(b, backend="litert")
    assert (ort.model.backend, lite.model.backend) == ("onnxruntime", "litert")
    x = ort.pre.prepare_windows(windows)
    p_ort, p_lite = ort.model.predict_proba(x), lite.model.predict_proba(x)
    np.testing.assert_allclose(p_lite, p_ort, atol=1e-5)
    assert (p_lite.argmax(1) == labels).mean() == (p_ort.argmax(1) == labels).mean()


def test_automatic_choice_follows_the_manifest_order_and_the_installed_backends(two_format_bundle, monkeypatch):
    b = load_bundle(two_format_bundle / "b.tar.gz")
    assert [m.format for m in engine.choose_models(b)] == ["onnx", "tflite"]
    monkeypatch.setattr(engine, "installed_backends", lambda: ["litert"])
    assert [m.format for m in engine.choose_models(b)] == ["tflite"]
    monkeypatch.setattr(engine, "installed_backends", lambda: ["onnxruntime"])
    with pytest.raises(UserError, match="need litert, which is not installed"):
        engine.choose_models(load_bundle(two_format_bundle / "tflite-only"))


class FakeOnnxModel(engine.Model):
    """A second backend for .onnx files, registered by the test below."""

    backend = "fake-onnx"

    def __init__(self, path, threads=1):
        self.path = path


def test_a_second_backend_for_a_format_runs_when_the_preferred_one_is_missing(two_format_bundle, monkeypatch):
    ort, litert = (next(b for b in engine.BACKENDS if b.name == n) for n in ("onnxruntime", "litert"))
    fake = engine.Backend("fake-onnx", "onnx", ("json",), FakeOnnxModel)  # json is importable: installed
    b = load_bundle(two_format_bundle / "b.tar.gz")
    onnx = b.models[0]
    assert onnx.format == "onnx"

    # both installed: the preferred (first listed) one runs the model
    monkeypatch.setattr(engine, "BACKENDS", (ort, fake, litert))
    assert {"onnxruntime", "fake-onnx"} <= set(engine.installed_backends())
    assert type(engine.open_model(onnx)) is engine.OnnxModel
    assert type(engine.open_model(onnx, backend="fake-onnx")) is FakeOnnxModel
    assert engine.choose_models(b, backend="fake-onnx") == [onnx]

    # the preferred one reported not installed: the second one runs the model
    monkeypatch.setattr(engine, "BACKENDS", (dataclasses.replace(ort, modules=("no_such_module_",)), fake, litert))
    assert "onnxruntime" not in engine.installed_backends()
    assert engine.choose_models(b)[0] == onnx
    assert type(engine.open_model(onnx)) is FakeOnnxModel
    with pytest.raises(UserError, match="need onnxruntime, which is not installed"):
        engine.choose_models(b, backend="onnxruntime")

    # neither installed: the model is skipped, as when a format has one backend
    monkeypatch.setattr(engine, "BACKENDS", (dataclasses.replace(ort, modules=("no_such_module_",)), litert))
    assert [m.format for m in engine.choose_models(b)] == ["tflite"]


def test_backend_choices_come_from_the_registry():
    from edgekit_runtime.cli import main

    option = next(p for p in main.commands["run"].params if p.name == "backend")
    assert sorted(option.type.choices) == sorted(b.name for b in engine.BACKENDS)


def test_asking_for_a_model_the_bundle_lacks_is_a_user_error(two_format_bundle):
    r = subprocess.run([EDGEKIT, "run", str(two_format_bundle / "b.tar.gz"), "-", "--precision", "int8"],
                       input="", capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no int8 model in the bundle; it holds model-fp32.onnx" in r.stderr


def test_run_on_the_litert_backend_with_threads(two_format_bundle, basic_motions_run, tmp_path):
    from click.testing import CliRunner

    from edgekit_runtime.cli import main

    csv = tmp_path / "test.csv"
    assert CliRunner().invoke(main, ["data", "to-csv", "BasicMotions", "--group", "test", str(csv)]).exit_code == 0
    outs = {}
    for backend in ("onnxruntime", "litert"):
        r = subprocess.run([EDGEKIT, "run", str(two_format_bundle / "b.tar.gz"), str(csv), "--backend", backend,
                            "--threads", "2"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        outs[backend] = [json.loads(line)["class"] for line in r.stdout.splitlines()]
    assert len(outs["litert"]) == 40 and outs["litert"] == outs["onnxruntime"]
