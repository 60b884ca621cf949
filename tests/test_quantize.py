"""Quantisation-aware training: the simulation rounds like the exporters, leaves the weights on the int8 grid,
and `edgekit quantize` falls back to it when post-training quantisation is refused."""

import copy
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import edgekit.export as export_module
from edgekit.checkpoint import load_checkpoint
from edgekit.models import MSACNN, MSACNNConfig, equalize_activations
from edgekit.quantize import matching_loss, quantised_layers, quantize_checkpoint, simulated_int8
from edgekit.settings import ExportSettings
from edgekit_exporters import ExportMismatch
from test_cli_errors import assert_one_line_error, edgekit


def on_int8_grid(weight: torch.Tensor, levels: int) -> bool:
    """Every output channel is an integer multiple in [-levels, levels] of max|w| / levels."""
    w = weight.detach().flatten(1).double()
    q = w / (w.abs().amax(1, keepdim=True).clamp_min(1e-12) / levels)
    return bool(torch.allclose(q, q.round(), atol=1e-3) and q.abs().max() <= levels + 1e-3)


def test_qat_loss_is_zero_for_the_float_model_itself_and_grows_as_the_student_moves_away():
    torch.manual_seed(0)
    model = MSACNN(MSACNNConfig.build(3, 4, 64, width=2)).eval()
    windows = np.random.default_rng(0).normal(size=(16, 3, 64)).astype(np.float32)
    reference = copy.deepcopy(model)
    loss = matching_loss(model, reference, windows)
    assert loss(torch.arange(16)).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.classifier.weight.add_(torch.randn_like(model.classifier.weight))
    assert loss(torch.arange(16)).item() > 1e-3


@pytest.mark.parametrize("levels", [127, 64])
def test_simulation_rounds_and_leaves_a_plain_model_on_the_grid(levels):
    torch.manual_seed(0)
    model = MSACNN(MSACNNConfig.build(3, 4, 64, width=2)).eval()
    keys = set(model.state_dict())
    x = torch.randn(8, 3, 64)
    with torch.no_grad():
        reference = model(x)
    assert not all(on_int8_grid(m.weight, levels) for m in quantised_layers(model))
    with simulated_int8(model, levels):
        model.train()
        with torch.no_grad():
            model(x)  # observe activation ranges
        model.eval()
        with torch.no_grad():
            simulated = model(x)
    assert not torch.allclose(simulated, reference)  # int8 rounding changes the logits a little...
    assert (simulated - reference).abs().max() < 0.5 * reference.abs().max()  # ...not wholesale
    assert set(model.state_dict()) == keys  # no parametrizations or hooks left behind
    assert all(on_int8_grid(m.weight, levels) for m in quantised_layers(model))
    assert not model._forward_pre_hooks and not any(m._forward_pre_hooks for m in quantised_layers(model))



def test_equalisation_keeps_the_function_and_gives_every_int8_input_channel_the_same_range():
    torch.manual_seed(0)
    model = MSACNN(MSACNNConfig.build(1, 4, 128, width=2)).eval()
    for bn in model.modules():  # trained-looking batch norms, so that folding them matters
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 2.0)
    x = torch.randn(32, 1, 128) * torch.linspace(0.2, 10.0, 32)[:, None, None]  # windows of very unequal scales
    equalized = equalize_activations(model, x)
    with torch.no_grad():
        assert torch.allclose(equalized(x), model(x), atol=1e-4)
    for net, equal in ((equalized, True), (model, False)):
        seen = []
        for consumer in (net.integrate[0], net.spatial[0]):
            consumer.register_forward_pre_hook(lambda mod, args: seen.append(args[0].amax(dim=(0, 2, 3))))
        with torch.no_grad():
            net(x)
        assert len(seen) == 2
        for ranges in seen:
            live = ranges[ranges > 0]
            assert bool(live.max() / live.min() < 1.001) == equal

def test_qat_exports_an_int8_model_that_keeps_accuracy(basic_motions_run, tmp_path):
    ckpt, out, tuned = basic_motions_run["root"] / "checkpoint", tmp_path / "int8", tmp_path / "qat"
    r = edgekit("quantize", ckpt, "--qat", "--epochs", "4", "--calibration-size", "24", "--out", out,
                "--save-checkpoint", tuned)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    q, v = manifest["quantization"], manifest["verification"]
    assert q["method"] == "qat" and q["ptq_refused"] is None and q["epochs_run"] == 4
    assert q["test_accuracy_int8_simulated_after"] >= 0.85
    assert v["argmax_agreement"] >= 0.95 and v["accuracy_exported"] >= 0.85
    info = edgekit("info", out)
    assert info.returncode == 0 and "quantized by" in info.stdout and "QAT" in info.stdout
    qat = load_checkpoint(tuned)
    assert qat.metrics["qat"]["source"] == str(ckpt) and qat.metrics["qat"]["format"] == "onnx"
    assert all(on_int8_grid(m.weight, 64) for m in quantised_layers(qat.model))
    # the ONNX file holds the tuned weights exactly: its int8 convolutions dequantise to them
    torch_weights = [m.weight.detach().numpy() for m in quantised_layers(qat.model)]
    graph = onnx.load(str(out / manifest["model"]["file"])).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "QLinearConv"]
    assert convs
    for node in convs:
        w = init[node.input[3]] * init[node.input[4]].reshape(-1, 1, 1, 1)
        assert any(t.shape == w.shape and np.allclose(t, w, rtol=1e-5, atol=1e-7) for t in torch_weights), node.name


def test_quantize_falls_back_to_qat_when_ptq_is_refused(basic_motions_run, tmp_path, monkeypatch):
    real = export_module.export_checkpoint
    calls = []

    def ptq_drifts(checkpoint, out, *args, **kwargs):  # the first (PTQ) export is refused, as for drift
        calls.append(checkpoint)
        if len(calls) == 1:
            raise ExportMismatch("ONNX int8 export does not match torch: argmax agreement 0.9 < 0.95")
        return real(checkpoint, out, *args, **kwargs)

    monkeypatch.setattr(export_module, "export_checkpoint", ptq_drifts)
    ckpt = str(basic_motions_run["root"] / "checkpoint")
    m = quantize_checkpoint(ckpt, str(tmp_path / "int8"), ExportSettings(calibration_size=24), epochs=2,
                            progress=False)
    assert len(calls) == 2 and calls[1] != ckpt  # the second export is of the QAT-tuned checkpoint
    assert m["quantization"]["method"] == "qat"
    assert "argmax agreement 0.9" in m["quantization"]["ptq_refused"]
    assert json.loads((tmp_path / "int8" / "manifest.json").read_text())["quantization"]["method"] == "qat"


def test_quantize_keeps_ptq_when_it_is_within_tolerance(basic_motions_run, tmp_path):
    m = quantize_checkpoint(str(basic_motions_run["root"] / "checkpoint"), str(tmp_path / "int8"),
                            ExportSettings(calibration_size=24), progress=False)
    assert m["quantization"] == {"method": "ptq"} and m["model"]["precision"] == "int8"


@pytest.mark.parametrize("args,message", [(["--epochs", "0", "--qat"], "--epochs must be at least 1"),
                                          (["--lr", "-1", "--qat"], "--lr must be positive")])
def test_quantize_rejects_bad_settings(basic_motions_run, tmp_path, args, message):
    out = tmp_path / "int8"
    r = edgekit("quantize", basic_motions_run["root"] / "checkpoint", "--out", out, *args)
    assert_one_line_error(r, message)
    assert not out.exists()


def test_refused_int8_export_falls_back_to_qat_and_refuses_when_that_fails_too(basic_motions_run, tmp_path):
    out = tmp_path / "int8"
    r = edgekit("export", basic_motions_run["root"] / "checkpoint", "--precision", "int8", "--atol", "1e-9",
                "--out", out)
    assert "falling back to quantisation-aware training" in r.stderr
    assert_one_line_error(r, "max abs diff")  # no int8 file matches torch to 1e-9, QAT or not
    assert not out.exists()


def test_qat_that_costs_accuracy_against_the_float_model_is_refused(basic_motions_run, tmp_path):
    # a learning rate far too large: the tuned model and its int8 file agree, but both lost what the float model had
    out, tuned = tmp_path / "int8", tmp_path / "qat"
    r = edgekit("quantize", basic_motions_run["root"] / "checkpoint", "--qat", "--epochs", "4", "--lr", "3",
                "--calibration-size", "24", "--out", out, "--save-checkpoint", tuned)
    assert_one_line_error(r, "against the model before it")
    assert not out.exists()
    # the same tuned checkpoint exported on its own is held to its source model too
    r = edgekit("export", tuned, "--precision", "int8", "--out", out)
    assert_one_line_error(r, "against the model before it")
    assert not out.exists()
