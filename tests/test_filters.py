"""Compile-side filter design and training-time preprocessing with signal-level steps: training, export, bundle
and the board see the same windows of a recording, and a checkpoint carries its own (its data moved away)."""

import json
import shutil

import numpy as np
import pytest
import scipy.signal as ss

from edgekit.data import load_dataset
from edgekit.filters import design_filter, signal_steps
from edgekit.normalization import fit_preprocessing
from edgekit_runtime.errors import UserError
from edgekit_runtime.preprocess import Preprocessing


def test_designed_filter_has_the_requested_response():
    f = design_filter("bandpass", (1.0, 5.0), 50.0, order=4)
    w, h = ss.sosfreqz(f.sos, worN=[0.05, 3.0, 20.0], fs=50.0)
    gain = np.abs(h)
    assert gain[1] > 0.95 and gain[0] < 1e-3 and gain[2] < 1e-2  # passes 3 Hz, stops DC drift and 20 Hz
    hp = design_filter("highpass", (0.5,), 10.0, order=2)
    assert (hp.kind, hp.cutoff_hz, hp.order, hp.sos.shape) == ("highpass", (0.5,), 2, (1, 6))


@pytest.mark.parametrize("options, message", [
    ({"highpass": 6.0}, "between 0 and the Nyquist frequency"),
    ({"bandpass": "3,1"}, "must be increasing"),
    ({"bandpass": "1"}, "--bandpass takes LOW,HIGH"),
    ({"highpass": 1.0, "bandpass": "1,2"}, "not both"),
    ({"highpass": 1.0, "filter_order": 0}, "--filter-order must be at least 1"),
])
def test_bad_filter_options_are_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        signal_steps(options, 10.0)


def test_stored_statistics_are_taken_after_the_signal_steps():
    train = load_dataset("BasicMotions")
    steps = signal_steps({"highpass": 0.5, "detrend": "linear"}, train.sampling_rate)
    pre = fit_preprocessing(train, "stored", train.length, steps)
    x = pre.prepare_windows(train.values)
    np.testing.assert_allclose(x.mean(axis=(0, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 2)), 1, atol=1e-3)
    # the stored preprocessing round-trips through preprocess.json with its filter
    back = Preprocessing.from_json(json.loads(json.dumps(pre.to_json())))
    np.testing.assert_array_equal(back.prepare_windows(train.values[:3]), x[:3])


def test_without_signal_options_training_preprocessing_is_unchanged():
    train = load_dataset("BasicMotions")
    pre = fit_preprocessing(train, "stored", train.length)
    x = train.values.transpose(1, 0, 2).reshape(train.n_channels, -1)
    np.testing.assert_allclose(pre.mean, x.mean(1), rtol=1e-6)
    assert "filter" not in pre.to_json() and "detrend" not in pre.to_json()


def _recording(path, rng, n=2400, rate=50.0):
    """A CSV recording with irregular timestamps, a 1 s gap and a label column; returns its lines."""
    t = np.cumsum(rng.uniform(0.6, 1.4, n) / rate)
    t[1500:] += 1.0
    v = np.sin(t[:, None] * [2.0, 5.0]) + 0.5 * rng.normal(size=(n, 2)) + [3.0, -1.0] + 0.2 * t[:, None]
    labels = np.where((t // 7) % 2 == 0, "idle", "run")
    lines = ["time,a,b,label"] + [f"{ti:.6f},{a:.6f},{b:.6f},{lab}" for ti, (a, b), lab in zip(t, v, labels)]
    path.write_text("\n".join(lines) + "\n")
    return lines


@pytest.mark.parametrize("signal", [{"highpass": 0.5, "max_gap": 0.2, "detrend": "linear"},
                                    {"bandpass": "0.5,10", "max_gap": 0.2}, {"bandpass": "0.5,10"}])
def test_training_windows_are_the_windows_edgekit_run_computes(tmp_path, signal):
    """Filters, resampling of irregular timestamps, a gap and any chunking: training, and every stage that
    reloads the checkpoint's data, sees exactly the windows the board computes from the same recording."""
    from edgekit.bundle import build_bundle
    from edgekit.checkpoint import load_checkpoint
    from edgekit.data import load_spec, model_inputs
    from edgekit.export import export_checkpoint
    from edgekit.train import train_student
    from edgekit.train_settings import TrainSettings
    from edgekit_runtime.model_dir import load_bundle
    from edgekit_runtime.readers import read_chunks
    from edgekit_runtime.stream import StreamPreprocessor

    lines = _recording(tmp_path / "rec.csv", np.random.default_rng(0))
    spec = {"dataset": str(tmp_path / "rec.csv"), "window": 100, "stride": 25, "label_column": "label"}
    train_student(spec, str(tmp_path / "ckpt"), signal=signal, settings=TrainSettings(steps=1), progress=False)
    ckpt = load_checkpoint(tmp_path / "ckpt")
    ds = load_spec(ckpt.data)
    trained = model_inputs(ckpt.preprocessing, ds)

    pre = ckpt.preprocessing
    stream = StreamPreprocessor(pre)
    pushed = [stream.push(c) for c in read_chunks(lines, "rec.csv", pre.channels, pre.sampling_rate,
                                                  label_column="label", classes=ckpt.classes, chunk_rows=37)]
    on_board = np.concatenate([w for _, w, _ in pushed])
    board_labels = np.concatenate([lab for _, _, lab in pushed])
    assert len(trained) > 20 and trained.shape == on_board.shape
    assert np.abs(trained - on_board).max() <= 1e-6
    np.testing.assert_array_equal(ds.labels, board_labels)
    if "max_gap" in signal:  # the stream split at the gap: no window spans it
        assert len(trained) < (2400 - 100) // 25

    # the bundle's evaluation windows, as `edgekit bench` prepares them, are windows of the same stream
    export_checkpoint(str(tmp_path / "ckpt"), str(tmp_path / "onnx"))
    build_bundle([str(tmp_path / "onnx")], str(tmp_path / "bundle"), checkpoint=str(tmp_path / "ckpt"))
    bundled, _ = load_bundle(tmp_path / "bundle").eval_inputs()
    nearest = np.abs(bundled[:, None] - on_board[None]).max(axis=(2, 3)).min(axis=1)
    assert len(bundled) >= 5 and nearest.max() <= 1e-6


def test_a_teacher_finetuned_with_signal_steps_teaches_on_the_boards_windows_and_passes_them_on(tmp_path):
    """`edgekit finetune --highpass --max-gap` (a recipe's [data] keys): the teacher learns from the windows the board
    computes (its window-level steps only, not filtered twice), and the distilled student inherits the steps."""
    from edgekit.checkpoint import load_checkpoint
    from edgekit.data import load_spec, model_inputs
    from edgekit.distill import distill
    from edgekit.settings import DistillSettings, SignalSettings, TeacherSettings
    from edgekit.teacher.data import prepare
    from edgekit.teacher.finetune import finetune
    from edgekit.teacher.store import load_teacher
    from edgekit.train_settings import TrainSettings

    _recording(tmp_path / "rec.csv", np.random.default_rng(0))
    spec = {"dataset": str(tmp_path / "rec.csv"), "window": 160, "stride": 40, "label_column": "label"}
    finetune(spec, str(tmp_path / "teacher"), TeacherSettings(size="tiny"), settings=TrainSettings(epochs=1),
             signal=SignalSettings(highpass=0.5, max_gap=0.2), progress=False)
    teacher = load_teacher(str(tmp_path / "teacher"))
    pre = teacher.preprocessing
    assert pre.filter is not None and pre.filter.kind == "highpass" and pre.max_gap == 0.2
    ds = load_spec(teacher.data)
    assert ds.filtered and len(ds) > 10
    np.testing.assert_allclose(prepare(ds, pre, teacher.model.cfg.patch).values.numpy(), model_inputs(pre, ds),
                               atol=1e-6)

    # an unlabelled recording (no --window) is cut with the teacher's window and signal steps
    (tmp_path / "more").mkdir()
    lines = _recording(tmp_path / "more" / "rec.csv", np.random.default_rng(1))
    (tmp_path / "more" / "rec.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    more = {"dataset": str(tmp_path / "more"), "window": 160}
    assert len(load_spec({**more, "signal": teacher.data["signal"]})) != len(load_spec(more))
    summary = distill(str(tmp_path / "teacher"), str(tmp_path / "student"), unlabeled=[{"dataset": more["dataset"]}],
                      settings=DistillSettings(minirocket=False), train_settings=TrainSettings(epochs=1),
                      progress=False)
    assert summary["windows"]["train_unlabelled"] == len(load_spec({**more, "signal": teacher.data["signal"]}))
    student = load_checkpoint(tmp_path / "student")
    assert student.preprocessing.to_json() == pre.to_json() and student.data.get("signal") == teacher.data["signal"]


def test_a_sweep_on_labels_trains_its_students_on_the_boards_windows(tmp_path):
    """`edgekit sweep FILES --bandpass --max-gap --detrend` takes the signal steps as `edgekit train` does."""
    from click.testing import CliRunner

    from edgekit.checkpoint import load_checkpoint
    from edgekit.data import load_spec
    from edgekit_runtime.cli import main

    _recording(tmp_path / "rec.csv", np.random.default_rng(0))
    spec = {"dataset": str(tmp_path / "rec.csv"), "window": 100, "stride": 25, "label_column": "label"}
    out = tmp_path / "sweep"
    r = CliRunner().invoke(main, ["sweep", spec["dataset"], "--window", "100", "--stride", "25", "--label-column",
                                  "label", "--bandpass", "0.5,10", "--max-gap", "0.2", "--detrend", "linear",
                                  "--params", "1k", "--seeds", "1", "--epochs", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "sweep.json").read_text())
    student = load_checkpoint(out / "points" / summary["points"][0]["id"] / "checkpoint")
    pre = student.preprocessing
    assert pre.filter.kind == "bandpass" and pre.filter.cutoff_hz == (0.5, 10.0) and pre.detrend == "linear"
    assert student.data["signal"]["max_gap"] == 0.2
    filtered = len(load_spec(student.data))  # the stream split at the gap: fewer windows than the raw recording
    assert sum(summary["windows"].values()) == filtered < len(load_spec(spec))


def test_a_benchmark_case_is_its_own_recording():
    """Cases are filtered from their own first sample, as `edgekit run` filters each case given as a recording."""
    from edgekit_runtime.stream import process_recording

    ds = load_dataset("BasicMotions")
    pre = fit_preprocessing(ds, "stored", ds.length, signal_steps({"bandpass": "0.5,4"}, ds.sampling_rate))
    x = pre.prepare_windows(ds.values[:5])
    for case, expected in zip(ds.values[:5], x):
        _, got, _ = process_recording(pre, np.arange(ds.length) / ds.sampling_rate, case.T)
        assert np.abs(got[0] - expected).max() <= 1e-6


def test_a_checkpoint_exports_and_bundles_with_its_data_moved_away_and_refuses_changed_data(tmp_path):
    """Export (fp32 and int8) and bundle use the windows the checkpoint keeps; a stage that must reload the data
    (QAT) refuses files that changed since training instead of silently re-splitting them."""
    from edgekit.bundle import build_bundle
    from edgekit.checkpoint import load_checkpoint
    from edgekit.export import export_checkpoint
    from edgekit.settings import ExportSettings
    from edgekit.train import train_student
    from edgekit.train_settings import TrainSettings
    from edgekit_runtime.model_dir import load_bundle
    from test_cli_errors import assert_one_line_error, edgekit

    data = tmp_path / "data"
    data.mkdir()
    _recording(data / "rec.csv", np.random.default_rng(1))
    spec = {"dataset": str(data), "window": 100, "stride": 50, "label_column": "label"}
    train_student(spec, str(tmp_path / "ckpt"), settings=TrainSettings(steps=30), progress=False)
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert len(ckpt.data["source_sha256"]) == 64
    test = ckpt.windows("test")

    data.rename(tmp_path / "elsewhere")
    fp32 = export_checkpoint(str(tmp_path / "ckpt"), str(tmp_path / "fp32"))
    assert fp32["verification"]["windows"] == len(test) and fp32["verification"]["max_abs_diff"] < 1e-4
    int8 = export_checkpoint(str(tmp_path / "ckpt"), str(tmp_path / "int8"), ExportSettings(precision="int8"))
    assert int8["verification"]["calibration_windows"] == len(ckpt.windows("calibration")) > 0
    build_bundle([str(tmp_path / "fp32")], str(tmp_path / "bundle"), checkpoint=str(tmp_path / "ckpt"))
    windows, labels = load_bundle(tmp_path / "bundle").eval_set()
    np.testing.assert_array_equal(labels, test.labels)

    # a damaged data.npz is one line, not a traceback
    shutil.copytree(tmp_path / "ckpt", tmp_path / "damaged")
    (tmp_path / "damaged" / "data.npz").write_bytes(b"not a zip")
    assert_one_line_error(edgekit("export", tmp_path / "damaged", "--out", tmp_path / "x"), "data.npz: unreadable")

    (tmp_path / "elsewhere").rename(data)
    with open(data / "rec.csv", "a") as f:
        f.write("9999.0,1.0,2.0,idle\n")
    assert_one_line_error(edgekit("quantize", tmp_path / "ckpt", "--qat", "--out", tmp_path / "qat"),
                          "the data changed since the checkpoint was trained")
    assert not (tmp_path / "qat").exists()
