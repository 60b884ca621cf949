"""Distilling a fine-tuned teacher into the MSA-CNN student."""

import json
import subprocess

import numpy as np
import pytest

from edgekit.settings import DataSettings, DistillSettings, TeacherSettings
from edgekit.checkpoint import load_checkpoint
from edgekit.cli import distill_table
from edgekit.data import load_dataset
from edgekit.distill import CACHE_DIR, distill, teacher_outputs
from edgekit.teacher.store import load_teacher
from edgekit.teacher.finetune import finetune
from edgekit.train_settings import TrainSettings
from edgekit.training_loop import predict_logits
from edgekit_runtime.errors import UserError

from conftest import EDGEKIT

QUICK = TrainSettings(epochs=15, patience=15, batch_size=16)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "ft"
    spec = DataSettings("BasicMotions").spec()
    finetune(spec, str(out), TeacherSettings(size="tiny"), settings=TrainSettings(epochs=40, lr=1e-3), progress=False)
    return out


def test_distilled_student_summary_and_cached_teacher_outputs(teacher, tmp_path, monkeypatch):
    summary = distill(str(teacher), str(tmp_path / "s"), unlabeled=[{"dataset": "BasicMotions"}],
                      train_settings=QUICK, progress=False)
    assert summary["windows"] == {"train_labelled": 32, "train_unlabelled": 80, "val": 8, "test": 40}
    s, t = summary["student"], summary["teacher"]
    assert s["parameters"] <= 10_000 and s["macs"] > 0 and 0 <= s["test_accuracy"] <= 1
    assert t["parameters"] > s["parameters"] and t["macs"] > s["macs"]
    assert (tmp_path / "s" / "model.pt").is_file()
    cached = sorted((teacher / CACHE_DIR).glob("*.npz"))
    assert len(cached) == 4  # train, the unlabelled set, validation, test
    # the student trained on labels alone is reported beside the distilled one, and the better one is kept
    assert summary["kept"] in ("alone", "distilled") and summary["refit"] is True
    for kind in ("alone", "distilled"):
        assert 0 <= summary[kind]["val_accuracy"] <= 1 and 0 <= summary[kind]["teacher_agreement"] <= 1
    assert summary["gain"] == pytest.approx(summary["distilled"]["test_accuracy"] - summary["alone"]["test_accuracy"],
                                            abs=1e-4)
    assert load_checkpoint(tmp_path / "s").metrics["kept"] == summary["kept"]

    # a second student reuses the cache: the teacher's inputs are never prepared again
    import edgekit.teacher.data as td

    monkeypatch.setattr(td, "prepare", lambda *a, **k: (_ for _ in ()).throw(AssertionError("teacher ran")))
    again = distill(str(teacher), str(tmp_path / "s2"), params="3k", train_settings=QUICK, progress=False)
    assert summary["rounds"] == 2 and again["rounds"] == 1  # self-training only with unlabelled windows
    assert len(sorted((teacher / CACHE_DIR).glob("*.npz"))) == 4


def test_teacher_outputs_cached_per_window_times(teacher, tmp_path):
    """The same values at other times are other windows to the teacher: the cache must not answer for them."""
    import shutil
    from dataclasses import replace

    t_dir = tmp_path / "t"
    shutil.copytree(teacher, t_dir, ignore=shutil.ignore_patterns(CACHE_DIR))
    ckpt = load_teacher(t_dir)
    ds = load_dataset("BasicMotions").subset(np.arange(6))
    first = teacher_outputs(str(t_dir), ckpt, ds)
    assert np.array_equal(teacher_outputs(str(t_dir), ckpt, ds)[0], first[0])
    slow = np.arange(ds.length) / ds.sampling_rate * 4  # the same samples, four times as far apart
    stretched = replace(ds, timestamps=np.tile(slow, (len(ds), 1)))
    teacher_outputs(str(t_dir), ckpt, stretched)
    assert len(list((t_dir / CACHE_DIR).glob("*.npz"))) == 2


def test_few_labels_the_rest_through_the_teacher(teacher, tmp_path, monkeypatch):
    import sys

    import edgekit.teacher.ensemble as ens

    mixed = []  # the second round's targets: the teacher's and the first student's logits of the same windows
    mean = ens.mean_probabilities

    def spy(logits):
        if sys._getframe(1).f_globals["__name__"] == "edgekit.distill":  # not the two-run teacher's own average
            mixed.append([tuple(x.shape) for x in logits])
        return mean(logits)

    monkeypatch.setattr(ens, "mean_probabilities", spy)
    summary = distill(str(teacher), str(tmp_path / "s"), labels_per_class=2, train_settings=QUICK, progress=False)
    assert summary["windows"]["train_labelled"] == 8 and summary["windows"]["train_unlabelled"] == 24
    assert summary["rounds"] == 2  # self-training on the unlabelled windows
    assert mixed == [[(32, 4), (32, 4)], [(8, 4), (8, 4)]]  # training windows, then validation ones
    assert "2 rounds" in "\n".join(distill_table(summary))
    with pytest.raises(UserError, match="at least 1"):
        distill(str(teacher), str(tmp_path / "x"), labels_per_class=0, train_settings=QUICK, progress=False)


def test_distillation_moves_the_student_towards_the_teacher(teacher, tmp_path):
    # with only the KL term the student learns from the teacher's soft labels alone: on the test windows it must
    # agree with the teacher far more often than chance (4 classes: 0.25)
    summary = distill(str(teacher), str(tmp_path / "kd"), settings=DistillSettings(0.0, 1.0, 0.0, 4.0),
                      train_settings=TrainSettings(epochs=40, patience=40, refit=False), progress=False)
    assert summary["distilled"]["teacher_agreement"] >= 0.6
    ckpt = load_checkpoint(tmp_path / "kd")
    test = load_dataset("BasicMotions")
    test = test.subset(np.flatnonzero(test.groups == "test"))
    student = predict_logits(ckpt.model, ckpt.preprocessing.prepare_windows(test.values)).argmax(1)
    teacher_pred = teacher_outputs(str(teacher), load_teacher(teacher), test)[0].argmax(1)
    # without a refit the saved student is the kept first fit
    assert (student == teacher_pred).mean() == pytest.approx(summary[summary["kept"]]["teacher_agreement"])


def test_teacher_with_other_classes_or_channels_is_refused_before_training(teacher, tmp_path):
    with pytest.raises(UserError, match="channels"):
        distill(str(teacher), str(tmp_path / "x"), {"dataset": "GunPoint"}, train_settings=QUICK, progress=False)
    csv = tmp_path / "rec.csv"
    rng = np.random.default_rng(0)
    rows = [",".join([str(i), *map(str, rng.normal(size=6)), "a" if i < 150 else "b"]) for i in range(300)]
    csv.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z,label\n" + "\n".join(rows) + "\n")
    spec = {"dataset": str(csv), "window": 100, "label_column": "label", "split": "random", "seed": 0,
            "val": 0.0, "test": 0.34}
    with pytest.raises(UserError, match="classes"):
        distill(str(teacher), str(tmp_path / "x"), spec, train_settings=QUICK, progress=False)
    assert not (tmp_path / "x").exists()


def test_distill_command_errors_and_output(teacher, tmp_path):
    r = subprocess.run([EDGEKIT, "distill", str(teacher), "--params", "100", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "smallest MSA-CNN" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([EDGEKIT, "distill", str(teacher), "--epochs", "3", "--out", str(tmp_path / "s"),
                        "--json", str(tmp_path / "s.json"), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "teacher" in r.stdout and "student" in r.stdout
    assert json.loads((tmp_path / "s.json").read_text())["student"]["parameters"] <= 10_000


def test_minirocket_mixed_into_the_soft_labels_with_its_validation_weight(teacher, tmp_path, monkeypatch):
    import edgekit.distill as d
    import edgekit.teacher.minirocket as minirocket

    off = distill(str(teacher), str(tmp_path / "off"), settings=DistillSettings(minirocket=False),
                  train_settings=QUICK, progress=False)
    assert off["minirocket"] is None
    chosen = distill(str(teacher), str(tmp_path / "on"), train_settings=QUICK, progress=False)["minirocket"]
    assert chosen["weight"] in minirocket.WEIGHTS and 0 <= chosen["test_accuracy"] <= 1
    # forced to half: the training targets the student learns from are the mix, and the table shows it
    mixes, targets = [], []
    mix, batches = minirocket.mixed_logits, d.distillation_batches
    monkeypatch.setattr(minirocket, "member_weight", lambda *a: 0.5)
    monkeypatch.setattr(minirocket, "mixed_logits", lambda *a: mixes.append((a[2], mix(*a))) or mixes[-1][1])
    monkeypatch.setattr(d, "distillation_batches", lambda *a: targets.append(a[4].numpy()) or batches(*a))
    summary = distill(str(teacher), str(tmp_path / "half"), train_settings=QUICK, progress=False)
    f = summary["minirocket"]
    assert f["weight"] == 0.5 and 0 <= f["target_test_accuracy"] <= 1 and "probabilities" not in f
    assert [w for w, _ in mixes] == [0.5] * 3  # training, validation and test windows
    assert np.array_equal(targets[0], mixes[0][1])
    assert "+ MiniRocket (0.5)" in "\n".join(distill_table(summary))
