"""Teacher commands: pretrain, finetune, embed."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import check_writable

from ..settings import (FINETUNE_TEACHER, NEW_TEACHER_SHAPE, DataSettings, FinetuneSettings, SignalSettings,
                        SplitSettings, TeacherSettings, from_options, options)
from ..train_settings import FINETUNE, FINETUNE_RECIPE, TrainSettings
from .settings import MaskSettings, PretrainSettings

# pretraining of your own: a new large encoder, where pretraining pays (--pretrained general continues the shipped one;
# a new teacher fine-tuned without pretraining defaults to small)
PRETRAIN_TEACHER = TeacherSettings(size="large")


def _check_shape_options(teacher: TeacherSettings) -> None:
    """A pretrained teacher keeps its own shape (size, patch, time bias): giving it is a mistake, not a request."""
    ctx = click.get_current_context()
    options = {p.name: "/".join(p.opts + p.secondary_opts) for p in ctx.command.params}  # --time-bias/--no-time-bias
    shaped = [options[k] for k in NEW_TEACHER_SHAPE
              if k in ctx.params and ctx.get_parameter_source(k).name == "COMMANDLINE"]
    if teacher.pretrained is not None and shaped:
        given = ", ".join(shaped)
        raise UserError(f"{given}: only a new teacher takes {'these' if len(shaped) > 1 else 'this'}, and "
                        f"{teacher.pretrained!r} keeps its own (add --pretrained none for a new teacher, or leave "
                        f"{given} out)")


def _write_json(path, obj):
    if path:
        from edgekit_runtime.files import write_text_atomic

        write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


@click.command()
@options(DataSettings)
@options(SplitSettings)
@options(TeacherSettings, defaults=PRETRAIN_TEACHER)
@options(PretrainSettings, exclude=("weight_decay", "use_mask_token", "use_uncertainty", "mask"))
@options(MaskSettings, prefix="mask_")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory [default: runs/DATASET/teacher].")
@click.option("--resume", is_flag=True, help="Continue the run in --out with its recorded data and settings.")
@click.option("--overwrite", is_flag=True, help="Start afresh even if --out holds a run.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the summary as JSON here.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def pretrain(out, resume, overwrite, json_out, quiet, **kwargs):
    """Pretrain the teacher on DATASET's training windows by masked reconstruction (labels are ignored).

    DATASET "general" rebuilds the general teacher that ships with edgekit (`make teacher`): the large encoder
    on the corpus of real unlabelled windows in edgekit/teacher/corpus.py with its fixed settings (the other
    training options do not apply), run in --out, written to edgekit/teacher/general/. With --pretrained, an
    existing teacher ("general" or a run directory) continues pretraining on DATASET.

    Runs under `torchrun --nproc_per_node K` with DistributedDataParallel as it is. Validation RMSE on masked
    positions is reported every --eval-every steps; a killed run continues with --resume to the same weights.
    """
    from .run import start_or_resume

    if json_out:  # refused before the work, not after it
        check_writable(json_out)
    split = from_options(SplitSettings, kwargs)
    teacher = from_options(TeacherSettings, kwargs, PRETRAIN_TEACHER)
    _check_shape_options(teacher)
    settings = from_options(PretrainSettings, kwargs, mask=from_options(MaskSettings, kwargs, prefix="mask_"))
    spec = from_options(DataSettings, kwargs).spec()
    out = out or f"runs/{Path(spec['dataset']).name}/teacher"
    if spec["dataset"] == "general":
        from .general import build_general

        if overwrite and Path(out).exists():
            import shutil

            shutil.rmtree(out)
        summary = build_general(out, progress=not quiet)
        _write_json(json_out, summary)
        last = summary["history"][-1]
        click.echo(f"teacher      {summary['parameters']:,} parameters, general corpus of "
                   f"{len(summary['sources'])} sources, {summary['windows']['train']} windows\n"
                   f"pretrained   {last['step']} steps in {last['seconds'] / 60:.1f} min\n"
                   f"val RMSE     {summary['final_val_rmse']} on masked positions (normalised units)\n"
                   f"written to   {summary['out']}")
        return
    if Path(out).exists() and not (resume or overwrite):
        raise UserError(f"{out}: already exists (pass --resume to continue it or --overwrite to start afresh)")
    summary = start_or_resume(spec, out, teacher, settings, split, resume=resume, progress=not quiet)
    if summary is None:  # not rank 0 under torchrun
        return
    _write_json(json_out, summary)
    click.echo(f"teacher      {summary['parameters']:,} parameters, attention {summary['attention']}\n"
               f"pretrained   {summary['steps']} steps on {summary['windows']['train']} windows\n"
               f"val RMSE     {summary['final_val_rmse']} on masked positions (normalised units)\n"
               f"checkpoint   {out}")


@click.command()
@options(DataSettings)
@options(SplitSettings)
@options(TeacherSettings, only=("pretrained", "size", "attention", "patch"), defaults=FINETUNE_TEACHER)
@options(FinetuneSettings)
@options(TrainSettings, only=(*FINETUNE_RECIPE, "seed"), defaults=FINETUNE)
@options(SignalSettings)
@click.option("--out", type=click.Path(file_okay=False), help="Checkpoint directory [default: runs/DATASET/finetuned].")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the summary as JSON here.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def finetune(out, json_out, quiet, **kwargs):
    """Fine-tune a teacher on DATASET's labels; report test accuracy/macro-F1.

    It starts from the general teacher that ships with edgekit unless --pretrained names another (a pretraining run
    directory) or is "none": a new teacher of --size and --patch, trained on the labels alone. --attention picks
    the backend either runs with (the backends share weights).
    """
    from .finetune import finetune as run

    if json_out:
        check_writable(json_out)
    teacher = from_options(TeacherSettings, kwargs, FINETUNE_TEACHER)
    _check_shape_options(teacher)
    finetuning = from_options(FinetuneSettings, kwargs)
    split = from_options(SplitSettings, kwargs)
    settings = from_options(TrainSettings, kwargs, FINETUNE)
    signal = from_options(SignalSettings, kwargs)
    spec = from_options(DataSettings, kwargs).spec()
    out = out or f"runs/{Path(spec['dataset']).name}/finetuned"
    summary = run(spec, out, teacher, finetuning, split, settings, signal, progress=not quiet)
    _write_json(json_out, summary)
    runs = len(summary["runs"])
    averaged = f", {runs} fine-tuning runs averaged" if runs > 1 else ""
    click.echo(f"teacher      {summary['parameters']:,} parameters, "
               f"{'from ' + teacher.pretrained if teacher.pretrained else 'new'}, "
               f"{summary['windows']['train']} labelled windows{averaged}\n"
               f"test         accuracy {summary['test_accuracy']:.3f}, macro-F1 {summary['test_macro_f1']:.3f}\n"
               f"checkpoint   {out}")


@click.command()
@click.argument("checkpoint", type=click.Path(file_okay=False))
@options(DataSettings)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .npy file.")
@click.option("--tokens", is_flag=True, help="Per-token embeddings [N, L, d] instead of pooled [N, d].")
def embed(checkpoint, out, tokens, **spec):
    """Write the teacher's embeddings of every window of DATASET to a .npy file."""
    from ..data import load_spec
    from .finetune import embed as run

    shape = run(checkpoint, load_spec(DataSettings(**spec).spec()), out, tokens=tokens)
    click.echo(f"wrote {list(shape)} embeddings to {out}")
