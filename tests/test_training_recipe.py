"""The training recipe and the student's configuration: schedule, augmentation, refit, data-shaped defaults."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgekit.augment import Augment
from edgekit.models import MSACNN, MSACNNConfig, count_parameters
from edgekit.models.msa_cnn import default_kernel
from edgekit.train_settings import TrainSettings
from edgekit.training_loop import train_classifier
from edgekit_runtime.cli import main
from edgekit_runtime.errors import UserError


def test_epochs_follow_the_step_budget_and_the_number_of_windows():
    s = TrainSettings(steps=1500, batch_size=16)
    assert s.epochs_for(40) == 500  # 3 batches per epoch (16, 16, 8)
    assert s.epochs_for(33) == 750  # 16, 16 and a dropped batch of one
    assert s.epochs_for(16_000) == 2  # large sets: few epochs
    assert s.epochs_for(10) == s.max_epochs  # tiny sets: capped
    assert TrainSettings(epochs=7).epochs_for(10_000) == 7


@pytest.mark.parametrize("bad", [dict(steps=0), dict(batch_size=1), dict(lr=0), dict(label_smoothing=1.0)])
def test_bad_recipe_settings_are_refused(bad):
    with pytest.raises(UserError):
        TrainSettings(**bad)


def test_augmentation_keeps_shape_and_edges_and_changes_values():
    torch.manual_seed(0)
    x = torch.arange(40, dtype=torch.float32).reshape(1, 1, 40).repeat(64, 3, 1)
    y = Augment(scale=0.0, jitter=0.0, shift=0.1)(x)
    assert y.shape == x.shape
    offsets = (x[:, 0, 20] - y[:, 0, 20]).round()
    assert offsets.abs().max() <= 4 and len(offsets.unique()) > 3  # shifted by up to 10% of 40 samples
    assert torch.equal(y[:, 0], y[:, 1])  # one shift per window, the same for all channels
    assert y.min() >= 0 and y.max() <= 39  # filled with edge samples, never wrapped around
    z = Augment()(x)
    assert not torch.allclose(z, x) and torch.isfinite(z).all()


def test_a_teachers_observed_mask_moves_with_its_values():
    torch.manual_seed(0)
    x = torch.arange(1, 41, dtype=torch.float32).reshape(1, 1, 40).repeat(64, 2, 1)
    observed = torch.ones(64, 40, dtype=torch.bool)
    observed[:, 18:22] = False
    x[:, :, 18:22] = 0.0  # a gap, zero-filled as the teacher's data has it
    y, moved = Augment(scale=0.0, jitter=0.0, shift=0.1).with_mask(x, observed)
    assert not torch.equal(moved, observed)  # shifted ...
    assert torch.equal(y[:, 0] == 0, ~moved)  # ... to where the zero-filled samples went (none at the edges here)


def test_training_without_augmentation_or_smoothing_is_plain_cross_entropy_that_fits():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2, 64)).astype(np.float32)
    y = (x[:, 0, :32].mean(1) > x[:, 0, 32:].mean(1)).astype(np.int64)
    model = MSACNN(MSACNNConfig.build(2, 2, 64, width=2))
    s = TrainSettings(steps=150, augment=False, label_smoothing=0.0)
    history = train_classifier(model, x, y, x[:8], y[:8], s, progress=False)
    assert history["steps"] == 150 and history["val_accuracy"] is not None
    assert (model(torch.from_numpy(x)).argmax(1).numpy() == y).mean() > 0.9


def test_progress_into_a_file_or_pipe_is_redrawn_seldom(capsys):
    """Ten redraws a second on a terminal; into a log (stderr captured here, as a pipe would be) a run of
    about 1.5 s draws the bar when it starts and when it closes, not at every one of its 150 epochs."""
    import time

    from edgekit.training_loop import fit

    model = torch.nn.Linear(2, 2)

    def slow_loss(idx):
        time.sleep(0.01)
        return model(torch.ones(len(idx), 2)).sum()

    fit(model, 8, slow_loss, None, TrainSettings(epochs=150, batch_size=8), progress=True)
    assert 1 <= capsys.readouterr().err.count("\r") <= 4


def test_kernel_follows_the_window_length():
    assert [default_kernel(n) for n in (24, 29, 100, 150, 251, 3000)] == [3, 3, 11, 15, 15, 15]
    assert MSACNNConfig.build(1, 2, 24).kernel == 3
    assert MSACNNConfig.build(1, 2, 24, kernel=9).kernel == 9
    with pytest.raises(ValueError, match="odd"):
        MSACNNConfig.build(1, 2, 100, kernel=8)


def test_paper_options_scaling_layer_and_univariate_spatial_kernel():
    base = MSACNNConfig.build(3, 4, 128, width=2)
    scaled = MSACNNConfig.build(3, 4, 128, width=2, input_scaling=True)
    assert count_parameters(MSACNN(scaled)) - count_parameters(MSACNN(base)) == 2 * 3
    uni = MSACNN(MSACNNConfig.build(1, 4, 128, width=2, univariate_kernel=5))
    assert uni.spatial[0].kernel_size == (1, 5)
    assert uni(torch.zeros(2, 1, 128)).shape == (2, 4)


def test_batch_norm_folds_away_in_eval_mode():
    cfg = MSACNNConfig.build(2, 3, 100, width=2)
    model = MSACNN(cfg)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv2d))  # the norm has one
    plain = MSACNN(MSACNNConfig.build(2, 3, 100, width=2, batch_norm=False))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())


def test_train_cli_refits_and_reports_the_validation_estimate(tmp_path):
    out = tmp_path / "ckpt"
    r = CliRunner().invoke(main, ["train", "BasicMotions", "--steps", "40", "--quiet", "--out", str(out),
                                  "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "s.json").read_text())["metrics"]
    assert m["refit"] is True and m["refit_epochs"] == m["epochs_run"] and 0 <= m["val_accuracy"] <= 1
    assert "validation accuracy" in r.output and "refitted on train + val" in r.output
    r = CliRunner().invoke(main, ["train", "BasicMotions", "--steps", "40", "--no-refit", "--quiet", "--out",
                                  str(tmp_path / "b"), "--json", str(tmp_path / "b.json")])
    assert r.exit_code == 0 and json.loads((tmp_path / "b.json").read_text())["metrics"]["refit"] is False


def test_train_cli_refuses_bad_recipe_options_in_one_line(tmp_path):
    r = CliRunner().invoke(main, ["train", "BasicMotions", "--steps", "0", "--out", str(tmp_path / "c")])
    assert r.exit_code != 0 and "Invalid value for '--steps': 0 is not in the range x>=1" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "c").exists()


def test_a_class_with_one_window_trains_it_without_validating_it(tmp_path):
    # documented fallback: stratified validation never takes the only window of a class, so it stays in training
    rows = ["time,a,b,label"]
    rng = np.random.default_rng(0)
    labels = ["x"] * 6 + ["y"] * 6 + ["z"]
    for i, label in enumerate(labels):
        for j in range(16):
            rows.append(f"{16 * i + j},{rng.normal():.4f},{rng.normal() + (label == 'y'):.4f},{label}")
    (tmp_path / "rec.csv").write_text("\n".join(rows) + "\n")
    r = CliRunner().invoke(main, ["train", str(tmp_path / "rec.csv"), "--window", "16", "--label-column", "label",
                                  "--test", "0.3", "--steps", "20", "--quiet", "--out", str(tmp_path / "c"),
                                  "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["windows"]["train"] + s["windows"]["val"] + s["windows"]["test"] == 13
    assert s["metrics"]["refit"] is True


def test_fewer_than_two_training_windows_is_a_clear_error():
    x = np.zeros((1, 2, 64), np.float32)
    with pytest.raises(UserError, match="at least two"):
        train_classifier(MSACNN(MSACNNConfig.build(2, 2, 64, width=1)), x, np.array([0]), x[:0],
                         np.zeros(0, np.int64), TrainSettings(steps=5), progress=False)


def test_auto_normalisation_goes_per_window_only_when_window_scales_span_orders_of_magnitude():
    from edgekit.data import load_dataset
    from edgekit.normalization import resolve_normalize

    motions = load_dataset("BasicMotions")  # still vs running: scales differ by up to ~56x, amplitude is a cue
    assert resolve_normalize("auto", motions.values) == "stored"
    rng = np.random.default_rng(0)
    currents = rng.normal(size=(40, 1, 64)) * np.logspace(-3, 2, 40)[:, None, None]  # 5 orders of magnitude
    assert resolve_normalize("auto", currents.astype(np.float32)) == "window_scale"
    counts = rng.normal(size=(40, 1, 64)) * np.logspace(0, 3, 40)[:, None, None]  # 10th to 90th percentile: ~250x
    assert resolve_normalize("auto", counts.astype(np.float32)) == "window_scale"
    assert resolve_normalize("stored", currents) == "stored"
