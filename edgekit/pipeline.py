"""`edgekit pipeline`: a recipe through pretrain → finetune → sweep → distill → export → bundle → bench.

Each stage writes RUN_DIR/STAGE/ with a `stage.json` record holding the hash of its settings and of the stages it
reads. A stage's work happens in RUN_DIR/.work/STAGE-HASH/ and is renamed into place with its record only when it
has finished, so a stage directory is either complete or absent. A rerun skips every stage whose record carries
the same hash; a killed run starts again at the first stage without one (pretraining continues from its last
checkpoint in the work directory, since its settings are in the hash; a sweep keeps its finished students).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import click

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import write_text_atomic

from . import __version__
from .recipe import Recipe, data_fingerprint
from .settings import (BundleSettings, DistillSettings, ExportSettings, FinetuneSettings, SignalSettings,
                       SplitSettings, TeacherSettings, from_recipe)

STAGES = ("pretrain", "finetune", "sweep", "distill", "export", "bundle", "bench")
RESUMABLE = ("pretrain", "sweep")  # stages that continue inside their work directory after a kill
RECORD = "stage.json"
# what each stage depends on in the recipe besides the stages before it
STAGE_SECTIONS = {"pretrain": ("data", "teacher", "pretrain"), "finetune": ("data", "teacher", "finetune"),
                  "sweep": ("sweep", "distill"), "distill": ("data", "student", "distill"), "export": ("export",),
                  "bundle": ("bundle",), "bench": ("bench",)}


def stage_key(stage: str, recipe: Recipe, upstream: dict[str, str]) -> str:
    settings = {s: (list(recipe.exports) if s == "export" else recipe[s]) for s in STAGE_SECTIONS[stage]}
    if "data" in settings:
        settings["data_fingerprint"] = data_fingerprint(recipe.data_spec())
    blob = json.dumps({"stage": stage, "edgekit": __version__, "settings": settings, "upstream": upstream},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_record(stage_dir: Path) -> dict | None:
    try:
        return json.loads((stage_dir / RECORD).read_text())
    except (OSError, ValueError):
        return None


def _pretrain(recipe: Recipe, run: Path, work: Path, progress: bool) -> dict:
    p = recipe["pretrain"]
    if p["steps"] == 0:
        return {"teacher": None}
    from .teacher.run import start_or_resume
    from .teacher.settings import MaskSettings, PretrainSettings

    out = work / "teacher"
    settings = from_recipe(PretrainSettings, p, seed=recipe["data"]["seed"],
                           mask=from_recipe(MaskSettings, p, prefix="mask_"))
    resume = (out / "trainer.pt").is_file()
    summary = start_or_resume(recipe.data_spec(), str(out), from_recipe(TeacherSettings, recipe["teacher"]), settings,
                              from_recipe(SplitSettings, recipe["data"]), resume=resume, progress=progress)
    return {"teacher": "teacher", "resumed": resume, "summary": summary}


def _finetune(recipe: Recipe, run: Path, work: Path, progress: bool) -> dict:
    from .teacher.finetune import finetune
    from .train_settings import FINETUNE, TrainSettings

    pre = read_record(run / "pretrain")["result"]["teacher"]
    teacher = from_recipe(TeacherSettings, recipe["teacher"])
    if pre:
        teacher = replace(teacher, pretrained=str(run / "pretrain" / pre))
    settings = from_recipe(TrainSettings, recipe["finetune"], FINETUNE, seed=recipe["data"]["seed"])
    summary = finetune(recipe.data_spec(), str(work / "teacher"), teacher,
                       from_recipe(FinetuneSettings, recipe["finetune"]), from_recipe(SplitSettings, recipe["data"]),
                       settings, from_recipe(SignalSettings, recipe["data"]), progress=progress)
    summary["checkpoint"] = "teacher"
    return {"teacher": "teacher", "summary": summary}


def _sweep(recipe: Recipe, run: Path, work: Path, progress: bool) -> dict:
    sw = recipe["sweep"]
    if sw is None:
        return {"sweep": None}
    from .sweep import SweepSettings, run_sweep

    d = recipe["distill"]
    s = run_sweep(str(work), None, str(run / "finetune" / "teacher"), sw["params"], sw["fractions"], sw["seeds"],
                  SweepSettings(epochs=sw["epochs"], lr=d["lr"], batch_size=d["batch_size"], target=sw["target"]),
                  distill_settings=from_recipe(DistillSettings, d), jobs=sw["jobs"], echo=lambda line: None)
    return {"sweep": "sweep.json", "recommendation": s["recommendation"]}


def _student_params(recipe: Recipe, run: Path) -> str:
    params = recipe["student"]["params"]
    if params != "auto" or recipe["student"]["width"] is not None:
        return params
    rec = read_record(run / "sweep")["result"].get("recommendation")
    if rec is None:
        raise UserError(f"student.params = \"auto\": no swept size is predicted within sweep.target of the teacher; "
                        f"see {run / 'sweep' / 'sweep.md'}, then raise sweep.target or give student.params")
    return str(rec["parameters"])


def _distill(recipe: Recipe, run: Path, work: Path, progress: bool) -> dict:
    from .distill import distill
    from .train_settings import TrainSettings

    d, s = recipe["distill"], recipe["student"]
    summary = distill(str(run / "finetune" / "teacher"), str(work / "student"), None,
                      [{"dataset": u} for u in d["unlabeled"]], params=_student_params(recipe, run), width=s["width"],
                      settings=from_recipe(DistillSettings, d),
                      train_settings=from_recipe(TrainSettings, d, seed=recipe["data"]["seed"]), progress=progress)
    summary["checkpoint"] = "student"
    return {"student": "student", "summary": summary}


def _export(recipe: Recipe, run: Path, work: Path, progress: bool) -> dict:
    from .quantize import export_verified

    models = {}
    for e in recipe.exports:
        settings = from_recipe(ExportSettings, e)
        name = f"{settings.format}-{settings.precision}"
        m = export_verified(str(run / "distill" / "student"), str(work / name), settings, progress=progress)
        models[name] = {"file": m["model"]["file"], "bytes": m["model"]["bytes"], "verification": m["verification"]}
    return {"models": models}


def _bundle(recipe: Recipe, run: Path, work: Path, progress: bool) -> dict:
    from .bundle import build_bundle

    b = recipe["bundle"]
    name = "bundle.tar.gz" if b["archive"] else "bundle"
    models = read_record(run / "export")["result"]["models"]
    m = build_bundle([str(run / "export" / n) for n in models], str(work / name),
                     checkpoint=str(run / "distill" / "student"), settings=from_recipe(BundleSettings, b))
    return {"bundle": name, "models": m["models"]}


def _bench(recipe: Recipe, run: Path, work: Path, progress: bool) -> dict:
    from edgekit_runtime.bench import format_table, run_bench

    b = recipe["bench"]
    bundle = run / "bundle" / read_record(run / "bundle")["result"]["bundle"]
    result = run_bench(str(bundle), n_windows=b["windows"], threads=b["threads"], quick=b["quick"], progress=False)
    (work / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    (work / "bench.txt").write_text(format_table(result) + "\n")
    return {"bench": "bench.json",
            "models": [{k: m.get(k) for k in ("file", "backend", "latency", "windows_per_second", "accuracy")}
                       for m in result.get("models", [])]}


RUNNERS = {"pretrain": _pretrain, "finetune": _finetune, "sweep": _sweep, "distill": _distill, "export": _export,
           "bundle": _bundle, "bench": _bench}


def _finish(work: Path, final: Path) -> None:
    """Put the finished work directory in place of the stage directory (a rename: never half there)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        shutil.rmtree(old)
    os.replace(work, final)


def run_pipeline(recipe: Recipe, run_dir: str | Path, from_stage: str | None = None, progress: bool = True,
                 echo: Callable[[str], None] = print) -> dict:
    """Run the recipe's stages into `run_dir`; returns {stage: record}."""
    if from_stage is not None and from_stage not in STAGES:
        raise UserError(f"unknown stage {from_stage!r}; allowed: {', '.join(STAGES)}")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run / "recipe.json", json.dumps(recipe.to_json(), indent=2) + "\n")
    write_text_atomic(run / "recipe.toml", recipe.path.read_text())
    keys, records, forced = {}, {}, False
    for stage in STAGES:
        forced = forced or stage == from_stage
        key = stage_key(stage, recipe, dict(keys))
        keys[stage] = key
        final = run / stage
        record = read_record(final)
        if not forced and record is not None and record.get("key") == key:
            echo(f"{stage:<10}unchanged ({key}), skipped")
            records[stage] = record
            continue
        work = run / ".work" / f"{stage}-{key}"
        if stage not in RESUMABLE:
            shutil.rmtree(work, ignore_errors=True)
        for stale in (run / ".work").glob(f"{stage}-*"):  # leftovers of other settings
            if stale != work:
                shutil.rmtree(stale, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        echo(f"{stage:<10}running ({key})")
        t0 = time.perf_counter()
        result = RUNNERS[stage](recipe, run, work, progress)
        record = {"stage": stage, "key": key, "upstream": {s: keys[s] for s in STAGES[:STAGES.index(stage)]},
                  "seconds": round(time.perf_counter() - t0, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "result": result}
        (work / RECORD).write_text(json.dumps(record, indent=2, default=str) + "\n")
        _finish(work, final)
        echo(f"{stage:<10}done in {record['seconds']:.1f} s")
        records[stage] = record
    return records


def _summary_lines(run: Path, records: dict) -> list[str]:
    lines = []
    ft = records["finetune"]["result"]["summary"]
    st = records["distill"]["result"]["summary"]["student"]
    lines.append(f"teacher   {ft['parameters']:,} parameters, test accuracy {ft['test_accuracy']:.3f}")
    rec = records["sweep"]["result"].get("recommendation")
    if rec:
        pen = rec["predicted_ood_penalty"]
        lines.append(f"sweep     recommends {rec['parameters']:,} parameters (predicted ID error "
                     f"{rec['predicted_id_error']:.3f}, OOD penalty {'-' if pen is None else format(pen, '+.3f')}); "
                     f"{run / 'sweep' / 'sweep.md'}")
    d = records["distill"]["result"]["summary"]
    member = d.get("minirocket") or {}
    if member.get("weight"):
        lines.append(f"target    the teacher's soft labels mixed with MiniRocket's ({member['weight']:g}): "
                     f"test accuracy {member['target_test_accuracy']:.3f}")
    if "alone" in d:  # distillation summaries before the side-by-side comparison have no "alone"
        lines.append(f"alone     the student trained on labels alone: test accuracy {d['alone']['test_accuracy']:.3f}; "
                     f"distilled {d['distilled']['test_accuracy']:.3f} (gain {d['gain']:+.3f})")
        if d.get("note"):
            lines.append(f"note      {d['note']}")
    kept = ""
    if "kept" in d:
        why = "better on validation" if d["windows"]["val"] else "no validation windows to choose by"
        kept = f" (the {d['kept']} one, {why})"
    lines.append(f"student   {st['parameters']:,} parameters{kept}, test accuracy {st['test_accuracy']:.3f}")
    for name, m in records["export"]["result"]["models"].items():
        v = m["verification"]
        lines.append(f"export    {name}: {m['bytes'] / 1024:.1f} KiB, argmax agreement {v['argmax_agreement']:.3f}")
    for m in records["bench"]["result"]["models"]:
        acc = f", accuracy {m['accuracy']:.3f}" if m.get("accuracy") is not None else ""
        lines.append(f"bench     {m['file']}: {m['latency']['median_ms']:.3f} ms/window median{acc}")
    bundle = records["bundle"]["result"]["bundle"]
    lines.append(f"bundle    {run / 'bundle' / bundle}")
    return lines


@click.command("pipeline")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Run directory [default: runs/RECIPE_NAME].")
@click.option("--from", "from_stage", type=click.Choice(STAGES), help="Rerun this stage and every later one.")
@click.option("--check", is_flag=True, help="Only validate the recipe and print the stages' hashes.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def pipeline_command(recipe, out, from_stage, check, quiet):
    """Build everything RECIPE (a TOML file, see recipes/) asks for: pretrain → finetune → distill → export →
    bundle → bench, each stage in RUN_DIR/STAGE with a hash of its inputs; unchanged stages are skipped and a
    killed run resumes where it stopped."""
    from .recipe import load_recipe

    r = load_recipe(recipe)
    run = Path(out or f"runs/{r.name}")
    if check:
        keys = {}
        for stage in STAGES:
            keys[stage] = stage_key(stage, r, dict(keys))
            rec = read_record(run / stage)
            state = "done" if rec and rec.get("key") == keys[stage] else "to run"
            click.echo(f"{stage:<10}{keys[stage]}  {state}")
        return
    records = run_pipeline(r, run, from_stage=from_stage, progress=not quiet, echo=click.echo)
    for line in _summary_lines(run, records):
        click.echo(line)
