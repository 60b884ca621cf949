"""`edgekit pipeline`: recipe validation, stage hashes, skipping, --from and resuming a killed run."""

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict

import pytest
from click.testing import CliRunner

from conftest import EDGEKIT, REPO
from edgekit.pipeline import STAGES, read_record, run_pipeline
from edgekit.recipe import load_recipe, parse_recipe
from edgekit.settings import ExportSettings
from edgekit_runtime.cli import main

TINY = """
name = "tiny"
[data]
dataset = "BasicMotions"
bandpass = "0.5,4"
[teacher]
pretrained = "none"
size = "tiny"
[pretrain]
steps = {steps}
tokens_per_step = 256
eval_every = 2
checkpoint_every = 2
[finetune]
steps = 4
[student]
params = "{params}"
[distill]
epochs = 2
[[export]]
format = "onnx"
precision = "fp32"
[bundle]
eval_windows = 8
[bench]
windows = 8
"""


def write_recipe(tmp_path, steps=2, params="2k", name="tiny.toml"):
    p = tmp_path / name
    p.write_text(TINY.format(steps=steps, params=params))
    return p


@pytest.mark.parametrize("text, message", [
    ('[data]\ndataset = "BasicMotions"\n[student]\nparms = "3k"\n',
     "unknown key student.parms; allowed: params, width"),
    ('[data]\ndataset = "NoSuchSet"\n', "data.dataset = 'NoSuchSet' is neither a bundled dataset"),
    ('[data]\ndataset = "BasicMotions"\n[teacher]\nsize = "huge"\n', "teacher.size = 'huge' is not allowed; "
                                                                     "allowed: tiny, small, base, large"),
    ('[data]\ndataset = "BasicMotions"\n[teacher]\nsize = "tiny"\n', "teacher.size: only a new teacher takes "
                                                                     "this, and teacher.pretrained = 'general'"),
    ('[data]\ndataset = "BasicMotions"\n[teacher]\ntime_bias = false\npatch = 4\n',
     "teacher.patch, teacher.time_bias: only a new teacher takes these"),
    ('[data]\ndataset = "BasicMotions"\n[finetune]\nepochs = "ten"\n', "finetune.epochs must be an integer"),
    ('[data]\ndataset = "BasicMotions"\n[bundle]\narchive = 1\n', "bundle.archive must be true or false"),
    ('[data]\ndataset = "BasicMotions"\n[[export]]\nprecision = "fp16"\n', "allowed: fp32, int8"),
    ('[student]\nparams = "3k"\n', "data.dataset is required"),
    ('teacher = 3\n[data]\ndataset = "BasicMotions"\n', "teacher must be a table"),
    ('[data]\ndataset = "BasicMotions"\n[students]\n', "unknown key students; allowed: name, data,"),
    ('[data]\ndataset = "BasicMotions"\ndetrend = "sideways"\n', "data.detrend = 'sideways' is not allowed; "
                                                                 "allowed: none, constant, linear"),
    ('[data\n', "not valid TOML"),
    ('[data]\ndataset = "BasicMotions"\n[student]\nparams = "auto"\n', "add a [sweep] table"),
    ('[data]\ndataset = "BasicMotions"\n[sweep]\nfractions = [0.5, "all"]\n',
     "sweep.fractions must be a list of numbers"),
    ('[data]\ndataset = "BasicMotions"\n[sweep]\nfractions = [1.5]\n', "sweep.fractions must be in (0, 1]"),
    ('[data]\ndataset = "BasicMotions"\n[distill]\ntemperature = 0\n',
     "distill: the distillation temperature must be positive"),
    ('[data]\ndataset = "BasicMotions"\n[distill]\nsteps = 0\n', "distill.steps must be at least 1, got 0"),
    ('[data]\ndataset = "BasicMotions"\n[distill]\nlr = nan\n', "distill.lr must be a number, got nan"),
    ('[data]\ndataset = "BasicMotions"\n[distill]\nce_weight = 0\nkd_weight = 0\n', "nothing teaches the classifier"),
    ('[data]\ndataset = "BasicMotions"\n[sweep]\nfractions = [inf]\n', "sweep.fractions must be a list of numbers"),
    ('[data]\ndataset = "BasicMotions"\nbandpass = "a,b"\n', "data: --bandpass takes LOW,HIGH in Hz, got 'a,b'"),
    ('[data]\ndataset = "BasicMotions"\nmax_gap = -1.0\n', "data: --max-gap must be a positive number"),
    ('name = "../../etc"\n[data]\ndataset = "BasicMotions"\n', "name = '../../etc' must be a plain name"),
])
def test_invalid_recipe_is_one_line_naming_the_key_before_any_work(tmp_path, text, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["pipeline", str(recipe), "--out", str(out)])
    assert r.exit_code == 1
    assert message in r.output and r.output.count("\n") == 1 and "Traceback" not in r.output
    assert not out.exists()


def test_recipe_fills_defaults_and_resolves_files_relative_to_the_recipe(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("time,x,label\n0,1,a\n")
    r = parse_recipe('[data]\ndataset = "data"\nwindow = 1\n', tmp_path / "r.toml")
    assert r["data"]["dataset"] == str(tmp_path / "data")
    assert r.name == "r" and r["student"]["params"] == "10k"
    assert r.exports == (asdict(ExportSettings()),)  # the defaults of `edgekit export`


def test_shipped_recipes_are_valid():
    recipes = sorted((REPO / "recipes").glob("*.toml"))
    assert recipes
    for p in recipes:
        load_recipe(p)


def _mtimes(run):
    return {s: (run / s / "stage.json").stat().st_mtime_ns for s in STAGES}


def test_pipeline_runs_skips_unchanged_stages_and_reruns_from_a_stage(tmp_path):
    run = tmp_path / "run"
    records = run_pipeline(load_recipe(write_recipe(tmp_path)), run, progress=False, echo=lambda s: None)
    assert set(records) == set(STAGES)
    bundle = run / "bundle" / records["bundle"]["result"]["bundle"]
    assert subprocess.run([EDGEKIT, "verify", str(bundle)], capture_output=True).returncode == 0
    # [data]'s signal steps reach the board through the teacher and the student it taught
    assert json.loads((bundle / "preprocess.json").read_text())["filter"]["cutoff_hz"] == [0.5, 4.0]
    assert json.loads((run / "bench" / "bench.json").read_text())["models"]
    assert not list((run / ".work").iterdir())  # every work directory was moved into place

    first = _mtimes(run)
    log = []
    run_pipeline(load_recipe(write_recipe(tmp_path)), run, progress=False, echo=log.append)
    assert _mtimes(run) == first and all("skipped" in line for line in log)

    run_pipeline(load_recipe(write_recipe(tmp_path)), run, from_stage="bundle", progress=False, echo=lambda s: None)
    again = _mtimes(run)
    assert [s for s in STAGES if again[s] != first[s]] == ["bundle", "bench"]

    # a different student budget changes distill's hash and every later one, not the teacher's
    run_pipeline(load_recipe(write_recipe(tmp_path, params="3k")), run, progress=False, echo=lambda s: None)
    third = _mtimes(run)
    assert [s for s in STAGES if third[s] != again[s]] == ["distill", "export", "bundle", "bench"]
    assert read_record(run / "distill")["upstream"]["finetune"] == read_record(run / "finetune")["key"]


def test_a_failed_stage_leaves_no_stage_directory_and_the_rerun_continues_there(tmp_path, monkeypatch):
    import edgekit.pipeline as pipeline

    run = tmp_path / "run"
    recipe = load_recipe(write_recipe(tmp_path, steps=0))

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setitem(pipeline.RUNNERS, "export", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(recipe, run, progress=False, echo=lambda s: None)
    assert [s for s in STAGES if (run / s).exists()] == ["pretrain", "finetune", "sweep", "distill"]
    monkeypatch.undo()
    log = []
    run_pipeline(recipe, run, progress=False, echo=log.append)
    assert [line.split()[0] for line in log if "skipped" in line] == ["pretrain", "finetune", "sweep", "distill"]
    assert read_record(run / "pretrain")["result"]["teacher"] is None  # steps = 0: trained from scratch


def test_killed_pipeline_resumes_pretraining_from_its_last_checkpoint(tmp_path):
    recipe = write_recipe(tmp_path, steps=12)
    run = tmp_path / "run"
    proc = subprocess.Popen([EDGEKIT, "pipeline", str(recipe), "--out", str(run), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120  # generous: only guards against a hang
        while not list(run.glob(".work/pretrain-*/teacher/trainer.pt")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the pipeline ended before pretraining checkpointed"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (run / "pretrain").exists()
    (work,) = run.glob(".work/pretrain-*")
    done = json.loads((work / "teacher" / "teacher.json").read_text())["state"]["step"]
    assert 0 < done < 12
    records = run_pipeline(load_recipe(recipe), run, progress=False, echo=lambda s: None)
    pre = records["pretrain"]["result"]
    assert pre["resumed"] and [h["step"] for h in pre["summary"]["history"]] == list(range(2, 13, 2))


def test_auto_student_size_is_the_one_the_sweep_recommends(tmp_path):
    text = TINY.format(steps=0, params="auto") + """
[sweep]
params = ["1k", "3k", "10k"]
seeds = 1
epochs = 2
target = 1.0
"""
    recipe = tmp_path / "auto.toml"
    recipe.write_text(text)
    run = tmp_path / "run"
    records = run_pipeline(load_recipe(recipe), run, progress=False, echo=lambda s: None)
    rec = records["sweep"]["result"]["recommendation"]
    sweep = json.loads((run / "sweep" / "sweep.json").read_text())
    assert rec == sweep["recommendation"]
    # every swept size meets a target of 1.0, so the smallest is recommended and distilled
    assert rec["parameters"] == min(p["parameters"] for p in sweep["points"])
    assert records["distill"]["result"]["summary"]["student"]["parameters"] == rec["parameters"]
