"""The first slice end to end on real data: train on BasicMotions, export to ONNX, run with the runtime."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgekit.checkpoint import load_checkpoint
from edgekit.data import load_dataset
from edgekit.export import export_checkpoint
from edgekit.settings import ExportSettings
from edgekit.models import MSACNN, MSACNNConfig, config_for_budget, count_macs, count_parameters
from edgekit_exporters import ExportMismatch, export_onnx
from edgekit_runtime.cli import main
from edgekit_runtime.errors import UserError
from edgekit_runtime.runner import Runner
from edgekit_runtime.stream import process_recording


def test_default_student_is_the_widest_within_ten_thousand_parameters():
    cfg = config_for_budget(6, 4, 100, 10_000)
    n = count_parameters(MSACNN(cfg))
    assert 9_500 <= n <= 10_000  # quarter steps of width use the budget
    wider = MSACNNConfig.build(6, 4, 100, width=cfg.width + 0.25)
    assert count_parameters(MSACNN(wider)) > 10_000
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in MSACNN(cfg).modules())


def test_too_small_a_budget_names_the_smallest_possible():
    with pytest.raises(UserError, match="smallest MSA-CNN for 6 channels, 4 classes and 100 samples has 154"):
        config_for_budget(6, 4, 100, 150)


@pytest.mark.parametrize("budget", [1_000_000, 10_000_000])
def test_a_large_budget_gets_the_widest_student_that_fits(budget):
    cfg = config_for_budget(3, 4, 500, budget)  # found by bisection: ~420 width² parameters
    assert count_parameters(MSACNN(cfg)) <= budget < count_parameters(MSACNN(replace(cfg, width=cfg.width + 0.25)))


@pytest.mark.parametrize("option, value, message", [
    ("--params", "inf", "at most 10M"), ("--params", "nan", "at most 10M"), ("--params", "1e9", "at most 10M"),
    ("--width", "nan", "width must be between 0.25 and 160"), ("--width", "inf", "width must be between"),
    ("--width", "1e6", "width must be between"),
])
def test_a_student_size_out_of_reason_is_refused_in_one_line(tmp_path, option, value, message):
    r = CliRunner().invoke(main, ["train", "GunPoint", option, value, "--steps", "1", "--out", str(tmp_path / "c")])
    assert r.exit_code == 1 and message in r.output and r.output.count("\n") == 1, r.output
    assert not (tmp_path / "c").exists()


def test_macs_count_the_convolutions_linears_and_attention():
    cfg = MSACNNConfig.build(1, 2, 64, width=1, scales=1, scale_kernel=1, layers=0, kernel=15)
    # conv 1x15 (8 filters) on 64 steps; 1x1 integrate 8->4; spatial 4->8; embedding 8->4; classifier 4->2
    expected = 64 * 8 * 15 + 64 * 4 * 8 + 64 * 8 * 4 + 64 * 4 * 8 + 2 * 4
    assert count_macs(MSACNN(cfg)) == expected


def test_macs_count_every_convolution_and_linear_layer():
    import torch
    from torch import nn

    from edgekit.models.macs import macs_of

    model = nn.Sequential(nn.Conv1d(3, 8, 5, padding=2, groups=1), nn.Conv1d(8, 8, 3, groups=4), nn.Flatten(),
                          nn.Linear(8 * 30, 2))
    # 8 filters × 32 steps × 3·5 inputs; grouped: 8 × 30 × (8/4)·3; linear 2 × 240
    assert macs_of(model, torch.zeros(1, 3, 32)) == 8 * 32 * 15 + 8 * 30 * 6 + 2 * 240


def test_training_beats_what_a_broken_model_could_reach(basic_motions_run):
    # BasicMotions has 4 balanced classes (10 test windows each): a constant or random predictor scores ~0.25,
    # and a model that learned only "moving vs still" at most 0.5. 0.85 needs all four activities told apart;
    # small CNNs reach 0.95-1.0 on this benchmark.
    m = basic_motions_run["summary"]["metrics"]
    assert m["test_accuracy"] >= 0.85
    assert m["test_macro_f1"] >= 0.85


def test_checkpoint_reloads_with_weights_only(basic_motions_run):
    ckpt = load_checkpoint(basic_motions_run["root"] / "checkpoint")
    assert ckpt.classes == ("badminton", "running", "standing", "walking")
    assert ckpt.data["split"] == "group" and ckpt.data["test_groups"] == ["test"]


def test_onnx_export_matches_torch(basic_motions_run):
    v = basic_motions_run["manifest"]["verification"]
    assert v["windows"] == 40 and v["max_abs_diff"] < 1e-4 and v["argmax_agreement"] == 1.0
    assert v["input_shape"] == ["batch", 6, 100]


def test_runtime_prediction_equals_torch(basic_motions_run):
    root = basic_motions_run["root"]
    ckpt = load_checkpoint(root / "checkpoint")
    ds = load_dataset("BasicMotions")
    test = ds.subset(np.flatnonzero(ds.groups == "test"))
    runner = Runner(root / "model", batch=7)  # a batch that does not divide 40
    # The board's streaming path on the test windows laid end to end cuts and prepares the same windows.
    samples = test.values.transpose(0, 2, 1).reshape(-1, test.values.shape[1])
    ends, windows, _ = process_recording(runner.pre, np.arange(len(samples)) / runner.pre.sampling_rate, samples)
    records = list(runner.predict(ends, windows, "mem"))
    with torch.no_grad():
        ref = torch.softmax(ckpt.model(torch.from_numpy(ckpt.preprocessing.prepare_windows(test.values))), -1)
    got = np.array([[r["probabilities"][c] for c in ckpt.classes] for r in records])
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-5)
    assert [r["class"] for r in records] == [ckpt.classes[k] for k in ref.argmax(-1)]


def test_run_command_on_a_csv_stream(basic_motions_run, tmp_path):
    root = basic_motions_run["root"]
    cli = CliRunner()
    csv = tmp_path / "test.csv"
    r = cli.invoke(main, ["data", "to-csv", "BasicMotions", "--group", "test", str(csv)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "pred.jsonl"
    r = cli.invoke(main, ["run", str(root / "model"), str(csv), "--label-column", "label", "--out", str(out)])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 40
    acc = np.mean([rec["class"] == rec["label"] for rec in records])
    assert acc == pytest.approx(basic_motions_run["summary"]["metrics"]["test_accuracy"])
    assert records[0]["window_end"] == pytest.approx(9.9)


def test_export_outside_tolerance_is_refused_and_writes_nothing(basic_motions_run, tmp_path):
    with pytest.raises(ExportMismatch, match="does not match torch"):
        export_checkpoint(str(basic_motions_run["root"] / "checkpoint"), str(tmp_path / "m"), ExportSettings(atol=0.0))
    assert not (tmp_path / "m").exists()
    assert not list(tmp_path.iterdir())


def test_exporter_catches_a_model_that_differs_from_its_export(tmp_path):
    class Drifting(MSACNN):
        """Returns different logits in eager mode than in the exported graph (as a broken converter would)."""

        def forward(self, x):
            out = super().forward(x)
            return out + 1.0 if torch.compiler.is_compiling() else out

    model = Drifting(MSACNNConfig.build(2, 3, 16)).eval()
    x = np.random.default_rng(0).normal(size=(6, 2, 16)).astype(np.float32)
    with pytest.raises(ExportMismatch):
        export_onnx(model, tmp_path / "m.onnx", x)
    assert not (tmp_path / "m.onnx").exists()


def test_tampered_model_is_refused(basic_motions_run, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(basic_motions_run["root"] / "model", copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    r = CliRunner().invoke(main, ["bench", str(copy)])
    assert r.exit_code == 1
    assert "model.onnx does not match its sha256" in r.output and "Traceback" not in r.output
