"""Bad input: a clear one-line error and a non-zero exit, never a traceback and never a half-written file."""

import subprocess

import pytest

from conftest import EDGEKIT


def edgekit(*args, cwd=None):
    return subprocess.run([EDGEKIT, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_line_error(r, *fragments):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("edgekit: error:")]
    assert len(errors) == 1, r.stderr
    for f in fragments:
        assert f in errors[0]


def test_unknown_dataset():
    assert_one_line_error(edgekit("data", "show", "NoSuchSet"), "unknown dataset 'NoSuchSet'")


def test_train_on_a_malformed_csv_writes_no_checkpoint(tmp_path):
    p = tmp_path / "rec.csv"
    p.write_text("time,a,label\n0,1,x\n1,zz,x\n2,3,y\n")
    out = tmp_path / "ckpt"
    r = edgekit("train", p, "--window", "2", "--label-column", "label", "--out", out)
    assert_one_line_error(r, str(p), "line 3", "column 'a'", "non-numeric")
    assert not out.exists()


def test_train_refuses_a_constant_channel_that_the_board_would_scale_by_1e8(tmp_path):
    rows = [f"{i},{(i * 7) % 5},3,{'xy'[i // 8 % 2]}" for i in range(64)]  # machine_id: 3 in every row
    (tmp_path / "rec.csv").write_text("time,a,machine_id,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "ckpt"
    r = edgekit("train", tmp_path / "rec.csv", "--window", "8", "--label-column", "label", "--out", out)
    assert_one_line_error(r, "'machine_id'", "single value", "--channels")
    assert "'a'" not in r.stderr and not out.exists()


def test_train_without_labels():
    r = edgekit("train", "Daphnet")
    assert_one_line_error(r, "training split has 1 class")


def test_export_of_a_missing_checkpoint(tmp_path):
    assert_one_line_error(edgekit("export", tmp_path / "nope"), "not a checkpoint directory")


def test_export_of_a_corrupt_checkpoint(tmp_path):
    (tmp_path / "checkpoint.json").write_text("{not json")
    assert_one_line_error(edgekit("export", tmp_path), "not valid JSON")


@pytest.mark.parametrize("recorded", [True, False], ids=["with-digest", "written-before-digests"])
def test_a_damaged_weights_file_in_a_checkpoint_is_refused_in_one_line(basic_motions_run, tmp_path, recorded):
    import json
    import shutil

    from edgekit.checkpoint import load_checkpoint
    from edgekit_runtime.errors import UserError

    weights = (basic_motions_run["root"] / "checkpoint" / "model.pt").read_bytes()
    for damage, data in (("garbage", bytes(range(256)) * 100), ("truncated", weights[:5000]), ("empty", b"")):
        ckpt = tmp_path / f"{damage}-{recorded}"
        shutil.copytree(basic_motions_run["root"] / "checkpoint", ckpt)
        (ckpt / "model.pt").write_bytes(data)
        if not recorded:
            meta = json.loads((ckpt / "checkpoint.json").read_text())
            del meta["weights_sha256"]
            (ckpt / "checkpoint.json").write_text(json.dumps(meta))
        with pytest.raises(UserError) as e:
            load_checkpoint(ckpt)
        expected = "sha256 differs" if recorded else "cannot load the model"
        assert expected in str(e.value) and "\n" not in str(e.value), (damage, str(e.value))
    assert_one_line_error(edgekit("export", ckpt, "--out", tmp_path / "m"), str(ckpt))
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("command", ["train", "train-json", "export", "sweep"])
def test_an_output_that_cannot_be_written_is_refused_in_one_line(basic_motions_run, tmp_path, command):
    (tmp_path / "afile").write_text("not a directory\n")
    out = tmp_path / "afile" / "sub"
    args = {"train": ["train", "GunPoint", "--steps", "1", "--out", out],
            "train-json": ["train", "GunPoint", "--steps", "1", "--out", tmp_path / "ckpt", "--json", out / "s.json"],
            "export": ["export", basic_motions_run["root"] / "checkpoint", "--out", out],
            "sweep": ["sweep", "GunPoint", "--params", "1k", "--seeds", "1", "--epochs", "1", "--out", out]}[command]
    assert_one_line_error(edgekit(*args), str(out), "cannot write", "afile is not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing written, the checkpoint neither


def test_patience_without_validation_windows_is_refused():
    from edgekit.settings import SplitSettings
    from edgekit.train import train_student
    from edgekit.train_settings import TrainSettings
    from edgekit_runtime.errors import UserError

    with pytest.raises(UserError, match="--patience stops on the validation loss, and this split has no validation"):
        train_student({"dataset": "GunPoint"}, "never-written", split=SplitSettings(val=0),
                      settings=TrainSettings(patience=5))


def test_outputs_are_checked_before_training(tmp_path, monkeypatch):
    import edgekit.train
    from edgekit_runtime.errors import UserError

    monkeypatch.setattr(edgekit.train, "train_and_refit", lambda *a, **k: pytest.fail("trained before the check"))
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(UserError, match="already exists"):
        edgekit.train.train_student({"dataset": "GunPoint"}, str(tmp_path / "ckpt"))


@pytest.mark.parametrize("option, value", [("--atol", "nan"), ("--atol", "inf"), ("--min-agreement", "nan"),
                                           ("--min-agreement", "1.5"), ("--max-accuracy-drop", "-1")])
def test_export_tolerances_out_of_range_are_refused_before_exporting(option, value):
    from edgekit.settings import ExportSettings
    from edgekit_runtime.errors import UserError

    with pytest.raises(UserError, match=f"{option} must be a"):
        ExportSettings(**{option[2:].replace("-", "_"): float(value)})


@pytest.mark.parametrize("command", ["run", "bench", "info"])
def test_board_commands_on_a_directory_that_is_not_a_model(tmp_path, command):
    args = [command, tmp_path] + (["x.csv"] if command == "run" else [])
    assert_one_line_error(edgekit(*args), "manifest.json: file not found")


def test_run_on_input_missing_a_channel(basic_motions_run, tmp_path):
    p = tmp_path / "in.csv"
    p.write_text("time,acc_x\n0,1\n")
    out = tmp_path / "out.jsonl"
    r = edgekit("run", basic_motions_run["root"] / "model", p, "--out", out)
    assert_one_line_error(r, "missing channel column(s) acc_y")
    assert not out.exists() and list(tmp_path.iterdir()) == [p]
    p.write_text("time\tacc_x\n0\t1\n")  # a spreadsheet's tab-separated export
    r = edgekit("run", basic_motions_run["root"] / "model", p, "--out", out)
    assert_one_line_error(r, "missing channel column(s) acc_x", "(its header is separated by tabs: edgekit reads")
    assert not out.exists()
    p.write_text("time,acc_x\n0,1\n", encoding="utf-16")  # a Windows tool's "Unicode" export
    r = edgekit("run", basic_motions_run["root"] / "model", p, "--out", out)
    assert_one_line_error(r, "missing channel column(s)", "(the file is not UTF-8 text: UTF-16, or not text at all?)")


def test_existing_output_is_not_overwritten_silently(basic_motions_run):
    r = edgekit("export", basic_motions_run["root"] / "checkpoint", "--out", basic_motions_run["root"] / "model")
    assert_one_line_error(r, "already exists")
