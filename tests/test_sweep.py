"""Scaling-law fits, the Pareto front, and `edgekit sweep` on real data (tiny budgets: mechanics, not accuracy)."""

import json

import numpy as np
import pytest

from click.testing import CliRunner

from edgekit.scaling import fit, pareto_front, power_law, predict
from edgekit.train_settings import TrainSettings
from edgekit_runtime.cli import main


def test_fit_recovers_a_known_power_law_and_its_interval_covers_a_held_out_size():
    rng = np.random.default_rng(0)
    e, a, alpha = 0.05, 3.0, 0.6
    sizes = [1_000, 3_000, 10_000, 30_000]
    pts = [(n, power_law(n, e, a, alpha) + rng.normal(0, 0.003), s) for n in sizes for s in range(5)]
    f = fit(pts, predict_at=[100_000])
    assert f["alpha_interval"][0] <= alpha <= f["alpha_interval"][1]
    assert f["E_interval"][0] <= e <= f["E_interval"][1]
    (p,) = f["predictions"]
    truth = power_law(100_000, e, a, alpha)
    assert p["interval"][0] <= truth <= p["interval"][1]
    assert abs(predict(f, 100_000) - truth) < 0.01


def test_fit_needs_three_sizes():
    assert fit([(1000, 0.3, 0), (3000, 0.2, 0), (1000, 0.31, 1)]) is None


def test_pareto_front_keeps_only_undominated_models():
    rows = [{"parameters": 1000, "latency_ms": 0.03, "accuracy": 0.80},
            {"parameters": 3000, "latency_ms": 0.04, "accuracy": 0.95},
            {"parameters": 3000, "latency_ms": 0.05, "accuracy": 0.90},  # worse than the one above in everything
            {"parameters": 9000, "latency_ms": 0.06, "accuracy": 0.95}]  # bigger for the same accuracy
    assert pareto_front(rows) == [True, True, False, False]


def test_sweep_on_labels_fits_both_splits_and_resumes(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "JapaneseVowels", "--params", "1k,3k,6k", "--seeds", "2", "--epochs", "2", "--jobs", "2",
            "--out", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    s = json.loads((out / "sweep.json").read_text())
    assert len(s["points"]) == 6 and len({p["parameters"] for p in s["points"]}) == 3
    assert s["ood_is_grouped"] and s["windows"]["ood_test"] == 370
    for p in s["points"]:
        assert 0 <= p["id_error"] <= 1 and 0 <= p["ood_error"] <= 1 and p["latency_ms"] > 0
        assert (out / "points" / p["id"] / "checkpoint" / "model.pt").is_file()
    assert any(p["pareto"] for p in s["points"])
    assert "# Sweep on JapaneseVowels" in (out / "sweep.md").read_text()

    again = CliRunner().invoke(main, args)
    assert "6 students (6 already done)" in again.output
    assert json.loads((out / "sweep.json").read_text())["points"] == s["points"]
    # the same directory with other settings or data is refused, not reported with the first sweep's students
    for changed, differ in ((["--epochs", "3"], "other settings"), (["--seed", "1"], "other data"),
                            (["--bandpass", "0.5,4"], "other signal")):
        r = CliRunner().invoke(main, args + changed)
        assert r.exit_code == 1 and differ in r.output and "give another --out" in r.output, r.output
        assert r.output.count("\n") == 1
    assert json.loads((out / "sweep.json").read_text())["points"] == s["points"]
    # damaged results (a full disk, a hand edit) are trained again, a damaged latency file measured again
    first, second = (out / "points" / p["id"] / "result.json" for p in s["points"][:2])
    first.write_text(first.read_text()[:20])
    second.write_text('{"id": "x"}')
    (out / "latency.json").write_text("{")
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "6 students (4 already done)" in again.output, again.output
    assert len(json.loads((out / "sweep.json").read_text())["points"]) == 6


def test_sweep_reads_a_users_csv_files_with_the_data_options_of_train(tmp_path):
    from edgekit.data.ucr_csv import write_ucr_csv

    window = write_ucr_csv("ItalyPowerDemand", tmp_path / "csv")
    for f in (tmp_path / "csv").glob("*.csv"):
        f.write_text(f.read_text().replace("time,", "seconds,", 1))
    out = tmp_path / "sweep"
    args = ["sweep", str(tmp_path / "csv"), "--window", str(window), "--label-column", "label", "--time-column",
            "seconds", "--channels", "ch0", "--params", "1k", "--seeds", "1", "--epochs", "1", "--out", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    (point,) = json.loads((out / "sweep.json").read_text())["points"]
    checkpoint = json.loads((out / "points" / point["id"] / "checkpoint" / "checkpoint.json").read_text())
    assert checkpoint["preprocess"]["channels"] == ["ch0"] and checkpoint["data"]["time_column"] == "seconds"

    # files changed since: their students are not this data's
    changed = tmp_path / "csv" / "train.csv"
    head, first, rest = changed.read_text().split("\n", 2)
    time, value, label = first.split(",")
    changed.write_text("\n".join([head, f"{time},{float(value) + 1},{label}", rest]))  # one value moved
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "holds a sweep of other data files" in r.output, r.output


def test_sweep_distils_from_one_cached_teacher(tmp_path, monkeypatch):
    from scipy.special import softmax

    import edgekit.teacher.minirocket as minirocket
    from edgekit.distill import teacher_outputs
    from edgekit.settings import TeacherSettings
    from edgekit.sweep import _splits
    from edgekit.teacher.finetune import finetune
    from edgekit.teacher.store import load_teacher

    teacher = tmp_path / "teacher"
    finetune({"dataset": "BasicMotions"}, str(teacher), TeacherSettings(size="tiny"), settings=TrainSettings(epochs=1),
             progress=False)
    monkeypatch.setattr(minirocket, "member_weight", lambda *a: 0.5)  # as if MiniRocket had earned half the target
    r = CliRunner().invoke(main, ["sweep", "--teacher", str(teacher), "--params", "1k,3k,10k", "--seeds", "1",
                                  "--epochs", "2", "--out", str(tmp_path / "sweep")])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert s["teacher"]["parameters"] > max(p["parameters"] for p in s["points"])
    assert len(list((teacher / "distill-cache").glob("*.npz"))) == 3  # train, val and test windows, once each
    # the students learnt from the target edgekit distill teaches: half the teacher's probabilities, half MiniRocket's
    t = load_teacher(str(teacher))
    own = softmax(teacher_outputs(str(teacher), t, _splits(t.data)[1])[0], 1)
    taught = np.exp(np.load(tmp_path / "sweep" / "teacher-outputs.npz")["logits"])
    assert s["teacher"]["minirocket_weight"] == 0.5 and np.allclose(taught.sum(1), 1, atol=1e-4)
    assert (taught >= 0.5 * own - 1e-5).all() and not np.allclose(taught, own, atol=1e-2)


@pytest.mark.parametrize("args, message", [
    (["--ray", "127.0.0.1:6379"], "--ray needs the optional dependency ray"),
    (["--fractions", "0,1"], "data fractions must be in (0, 1]"),
    (["--fractions", "half"], "give comma-separated numbers"),
    (["--params", "10"], "a budget of 10 parameters is too small"),
    (["--params", ","], "--params names no parameter budget"),
    (["--target", "nan"], "--target an error margin from 0 to 1"),
])
def test_sweep_bad_input_is_one_line(tmp_path, args, message):
    if args[0] == "--ray":
        try:
            import ray  # noqa: F401
            pytest.skip("ray is installed here")
        except ImportError:
            pass
    r = CliRunner().invoke(main, ["sweep", "GunPoint", "--seeds", "1", "--epochs", "1", "--out", str(tmp_path / "s"),
                                  *args])
    assert r.exit_code == 1 and message in r.output and r.output.count("\n") == 1


def test_sweep_needs_exactly_one_of_dataset_and_teacher(tmp_path):
    r = CliRunner().invoke(main, ["sweep", "--out", str(tmp_path / "s")])
    assert r.exit_code == 1 and "give either DATASET" in r.output


@pytest.mark.parametrize("args", [["--window", "64"], ["--val", "0.5"], ["--split", "random"],
                                  ["--bandpass", "0.5,4"]])
def test_sweep_refuses_data_options_it_would_ignore_with_a_teacher(tmp_path, args):
    r = CliRunner().invoke(main, ["sweep", "--teacher", str(tmp_path / "t"), "--out", str(tmp_path / "s"), *args])
    assert r.exit_code == 1 and args[0] in r.output and "with --teacher" in r.output
    assert r.output.count("\n") == 1 and not (tmp_path / "s").exists()
