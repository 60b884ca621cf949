"""Compile-side commands, added to the `edgekit` command through the `edgekit.commands` entry-point group.

Heavy imports (torch, aeon) happen inside the commands so that `edgekit --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import check_not_an_input, check_writable

from .settings import (DataSettings, DistillSettings, ExportSettings, SignalSettings, SplitSettings, from_options,
                       options)
from .train_settings import RECIPE, TrainSettings


def _load_spec(spec: dict):
    from .data import load_spec

    return load_spec(spec)


@click.group()
def data():
    """Inspect the bundled real datasets and your own recordings."""


@data.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def data_list(as_json):
    """List the real datasets that ship with edgekit's dependencies."""
    from .data import BUNDLED, load_dataset

    rows = []
    for name, entry in BUNDLED.items():
        try:
            s = load_dataset(name).summary()
        except UserError as e:  # a dataset whose package is not installed
            click.echo(f"{name}: unavailable ({e})", err=True)
            continue
        rows.append({"name": name, "windows": s["windows"], "channels": s["channels"], "length": s["length"],
                     "classes": len(s["classes"]), "sampling_rate_hz": s["sampling_rate_hz"],
                     "description": entry.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'name':<16}{'windows':>8}{'ch':>4}{'length':>8}{'classes':>8}{'Hz':>8}  description")
    for r in rows:
        click.echo(f"{r['name']:<16}{r['windows']:>8}{r['channels']:>4}{r['length']:>8}{r['classes']:>8}"
                   f"{r['sampling_rate_hz']:>8g}  {r['description']}")


@data.command("show")
@options(DataSettings)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def data_show(as_json, **spec):
    """Shape, classes, class balance, sampling rate and channels of DATASET (a bundled name or a file/directory)."""
    s = _load_spec(DataSettings(**spec).spec()).summary()
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    balance = ", ".join(f"{k}: {v}" for k, v in s["class_balance"].items()) or "unlabelled"
    click.echo(f"dataset      {s['name']}\nshape        {s['shape']} (windows, channels, samples)\n"
               f"sampling     {s['sampling_rate_hz']:g} Hz, timestamps {s['timestamps']}\n"
               f"channels     {', '.join(s['channel_names'])}\nclasses      {balance}\n"
               f"uncertainty  {'yes' if s['uncertainty'] else 'no'}\npadded       {'yes' if s['padded'] else 'no'}\n"
               f"groups       {', '.join(s['groups']) or '-'}")


@data.command("to-csv")
@options(DataSettings)
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--group", help="Only windows of this group (e.g. 'test' for a benchmark's test split).")
def data_to_csv(out, group, **spec):
    """Write DATASET's windows one after another as a CSV stream (time, channels, label) to OUT.

    The result is what `edgekit run` reads: running a model with stride = window length on it classifies
    exactly the original windows.
    """
    import numpy as np

    from edgekit_runtime.files import atomic_write

    if Path(spec["dataset"]).exists():
        check_not_an_input(out, spec["dataset"])
    ds = _load_spec(DataSettings(**spec).spec())
    if group is not None:
        if ds.groups is None or group not in set(ds.groups.tolist()):
            raise UserError(f"{ds.name}: no group {group!r}")
        ds = ds.subset(np.flatnonzero(ds.groups == group))
    samples = ds.values.transpose(0, 2, 1).reshape(-1, ds.n_channels)
    times = np.arange(len(samples)) / ds.sampling_rate
    with atomic_write(out) as f:
        header = ["time", *ds.channel_names] + (["label"] if ds.labels is not None else [])
        f.write(",".join(header) + "\n")
        labels = np.repeat(ds.labels, ds.length) if ds.labels is not None else None
        for i, (t, row) in enumerate(zip(times, samples)):
            cells = [f"{t:.6f}", *(f"{v:.7g}" for v in row)]
            if labels is not None:
                cells.append(ds.class_names[labels[i]])
            f.write(",".join(cells) + "\n")
    click.echo(f"wrote {len(samples)} samples ({len(ds)} windows of {ds.length}) to {out}")


@click.command()
@options(DataSettings)
@options(SplitSettings)
@options(TrainSettings, only=(*RECIPE, "seed"))
@click.option("--params", default="10k", show_default=True,
              help="Parameter budget: the widest MSA-CNN that fits (e.g. 3k, 10k, 30k).")
@click.option("--width", type=float, help="Set the MSA-CNN width directly instead of --params (4: the paper's "
                                         "small; quarter steps).")
@click.option("--normalize", type=click.Choice(["auto", "stored", "window", "window_scale"]), default="auto",
              show_default=True,
              help="Per-channel normalisation with training statistics, or per window (window_scale: plus the "
                   "window's log scale as an offset); auto: window_scale when the windows' scales span more than "
                   "two orders of magnitude, else stored.")
@options(SignalSettings)
@click.option("--out", type=click.Path(file_okay=False),
              help="Checkpoint directory [default: runs/DATASET/checkpoint].")
@click.option("--overwrite", is_flag=True, help="Replace an existing checkpoint directory.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the summary as JSON here.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(params, width, normalize, out, overwrite, json_out, quiet, **kwargs):
    """Train the MSA-CNN student on the labels of DATASET and save a checkpoint.

    DATASET is a bundled name (see `edgekit data list`) or a CSV/Parquet file or directory of them. The
    recipe: a fixed number of optimiser steps with warm-up and cosine decay, label smoothing and augmented
    batches; accuracy on the validation windows is measured, then the model is refitted on training and
    validation windows together (--no-refit keeps the first model).
    """
    from .train import train_student

    if json_out:  # refused before the work, not after it
        check_writable(json_out)
    signal = from_options(SignalSettings, kwargs)
    split = from_options(SplitSettings, kwargs)
    settings = from_options(TrainSettings, kwargs)
    spec = from_options(DataSettings, kwargs).spec()
    out = out or f"runs/{spec['dataset'].replace('/', '_')}/checkpoint"
    summary = train_student(spec, out, split=split, params=params, width=width, normalize=normalize, signal=signal,
                            settings=settings, overwrite=overwrite, progress=not quiet)
    if json_out:
        from edgekit_runtime.files import write_text_atomic

        write_text_atomic(json_out, json.dumps(summary, indent=2) + "\n")
    click.echo(train_summary_text(summary, out))


def train_summary_text(summary: dict, out: str) -> str:
    m, cfg = summary["metrics"], summary["model"]
    val = f", validation accuracy {m['val_accuracy']:.3f}" if m.get("val_accuracy") is not None else ""
    refit = f"; refitted on train + val for {m['refit_epochs']} epochs" if m.get("refit") else ""
    return (f"dataset      {summary['dataset']} ({summary['windows']['train']} train, "
            f"{summary['windows']['val']} val, {summary['windows']['test']} test windows)\n"
            f"model        MSA-CNN width {cfg['width']}, {cfg['scales']} scales, kernel {cfg['kernel']}, "
            f"{summary['parameters']:,} parameters, {summary['macs']:,} MACs per window\n"
            f"training     {m['epochs_run']} epochs ({m['steps']} steps){val}{refit}; "
            f"{m['train_seconds']:.0f} s\n"
            f"test         accuracy {m['test_accuracy']:.3f}, macro-F1 {m['test_macro_f1']:.3f}\n"
            f"checkpoint   {out}")


def export_options(command):
    """Verification tolerances and int8 settings shared by `export` and `quantize`."""
    command = click.option("--overwrite", is_flag=True, help="Replace an existing model directory.")(command)
    return options(ExportSettings, exclude=("format", "precision"))(command)


def _echo_export(out: str, m: dict) -> None:
    v, model = m["verification"], m["model"]
    acc = f", accuracy delta {v['accuracy_delta']:+.3f}" if "accuracy_delta" in v else ""
    click.echo(f"wrote        {out}/{model['file']} ({model['bytes'] / 1024:.1f} KiB, {model['format']} "
               f"{model['precision']})\n"
               f"verified     {v['windows']} held-out windows: max abs diff {v['max_abs_diff']:.2e}, "
               f"argmax agreement {v['argmax_agreement']:.3f}{acc}")


@click.command()
@click.argument("checkpoint", type=click.Path(file_okay=False))
@options(ExportSettings, only=("format", "precision"))
@click.option("--out", type=click.Path(file_okay=False), help="Model directory [default: beside the checkpoint, "
                                                               "named model-FORMAT[-PRECISION]].")
@export_options
def export(checkpoint, out, overwrite, **kwargs):
    """Export CHECKPOINT to a model directory for the board, verified against torch on held-out windows.

    The directory holds the model file, preprocess.json and manifest.json (sha256 of every file, the op
    histogram and the verification metrics). An export outside tolerance is refused and nothing is written;
    for int8, a refused post-training quantisation falls back to quantisation-aware training, as
    `edgekit quantize` does.
    """
    from .quantize import export_verified

    settings = from_options(ExportSettings, kwargs)
    suffix = "" if settings.precision == "fp32" else "-" + settings.precision
    out = out or str(Path(checkpoint).parent / f"model-{settings.format}{suffix}")
    _echo_export(out, export_verified(checkpoint, out, settings, overwrite=overwrite))


@click.command()
@click.argument("checkpoint", type=click.Path(file_okay=False))
@options(ExportSettings, only=("format",))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="int8 model directory to write.")
@click.option("--qat", is_flag=True, help="Go straight to quantisation-aware training instead of trying "
                                          "post-training quantisation first.")
@click.option("--epochs", default=30, show_default=True,
              help="QAT fine-tuning epochs (a fixed schedule; the last weights are kept).")
@click.option("--lr", default=3e-4, show_default=True, help="QAT learning rate.")
@click.option("--save-checkpoint", type=click.Path(file_okay=False),
              help="Also keep the QAT-tuned checkpoint here (its weights on --format's int8 grid; `edgekit export "
                   "--precision int8` exports it again).")
@export_options
def quantize(checkpoint, out, qat, epochs, lr, save_checkpoint, overwrite, **kwargs):
    """Quantise CHECKPOINT to a verified int8 model directory, falling back to quantisation-aware training.

    Post-training static quantisation (calibrated on training windows) is tried first; when its drift from
    torch is outside tolerance, the model is fine-tuned with int8 simulated as --format's exporter quantises
    (weights per channel on its grid, layer inputs per tensor, straight-through rounding; starting from the
    equalised activation ranges PTQ uses) to give the float model's class probabilities on augmented training
    windows, and exported again. manifest.json records which method made the file.
    """
    from .quantize import quantize_checkpoint

    settings = from_options(ExportSettings, kwargs, precision="int8")
    m = quantize_checkpoint(checkpoint, out, settings, qat=qat, save_checkpoint=save_checkpoint, epochs=epochs, lr=lr,
                            overwrite=overwrite)
    q = m["quantization"]
    if q["method"] == "qat":
        click.echo(f"QAT          {q['epochs_run']} epochs: simulated int8 test accuracy "
                   f"{q['test_accuracy_int8_simulated_before']:.3f} -> {q['test_accuracy_int8_simulated_after']:.3f} "
                   f"(float before QAT {q['test_accuracy_float_before']:.3f})")
    else:
        click.echo("PTQ          within tolerance; no fine-tuning needed")
    _echo_export(out, m)


@click.command()
@click.argument("teacher", type=click.Path(file_okay=False))
@click.option("--dataset", help="Labelled data to distil on [default: the data and split the teacher was "
                                "fine-tuned on]; must have the teacher's channels and classes.")
@click.option("--unlabeled", multiple=True, help="Extra unlabelled data (bundled name or files), used through "
                                                 "the teacher's soft labels; repeatable.")
@click.option("--window", type=click.IntRange(min=1),
              help="Window length for --unlabeled recordings (default: the teacher's).")
@click.option("--params", default="10k", show_default=True, help="Student parameter budget (e.g. 3k, 10k, 30k).")
@click.option("--width", type=float, help="Set the student width directly instead of --params.")
@options(DistillSettings)
@click.option("--labels-per-class", type=click.IntRange(min=1),
              help="Keep this many labels per class of the training split; the other windows learn from the "
                   "teacher's soft labels only [default: as many as the teacher was fine-tuned with].")
@options(TrainSettings, only=(*RECIPE, "seed"))
@click.option("--out", type=click.Path(file_okay=False), help="Student checkpoint [default: TEACHER/../student].")
@click.option("--overwrite", is_flag=True, help="Replace an existing checkpoint directory.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the summary as JSON here.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def distill(teacher, dataset, unlabeled, window, params, width, labels_per_class, out, overwrite, json_out, quiet,
            **kwargs):
    """Distil a fine-tuned TEACHER into an MSA-CNN student; the result exports like any trained student.

    The same student is also trained on the labels alone; the better of the two on the validation windows is
    kept (and refitted on training + validation windows), and all three are shown side by side. Teacher outputs
    are cached next to the teacher, so distilling several students runs the teacher once. With unlabelled windows
    (--unlabeled, --labels-per-class) distillation runs twice: the second student learns from the mean of the
    teacher's and the first student's class probabilities (self-training).
    """
    from .distill import distill as run

    if json_out:
        check_writable(json_out)
    out = out or str(Path(teacher).parent / "student")
    spec = {"dataset": dataset} if dataset else None
    extra = [{"dataset": u, "window": window} for u in unlabeled]
    summary = run(teacher, out, spec, extra, params=params, width=width,
                  settings=from_options(DistillSettings, kwargs), train_settings=from_options(TrainSettings, kwargs),
                  labels_per_class=labels_per_class, overwrite=overwrite, progress=not quiet)
    if json_out:
        from edgekit_runtime.files import write_text_atomic

        write_text_atomic(json_out, json.dumps(summary, indent=2) + "\n")
    click.echo("\n".join(distill_table(summary)) + f"\ncheckpoint {out}")


def distill_table(summary: dict) -> list[str]:
    """Teacher, student alone and distilled student side by side (validation and test), for people."""
    t, s = summary["teacher"], summary["student"]

    def row(name, params, macs, m):
        val = "-" if m.get("val_accuracy") is None else f"{m['val_accuracy']:.3f}"
        return f"{name:<18}{params:>12,}{macs:>14,}{val:>10}{m['test_accuracy']:>10.3f}{m['test_macro_f1']:>10.3f}"

    lines = [f"{'':<18}{'params':>12}{'MACs':>14}{'val acc':>10}{'test acc':>10}{'macro-F1':>10}",
             row("teacher", t["parameters"], t["macs"], t)]
    member = summary.get("minirocket") or {}
    if member.get("weight"):  # the soft labels were the teacher's mixed with MiniRocket's
        lines.append(row(f"+ MiniRocket ({member['weight']:g})", t["parameters"], t["macs"],
                         {"val_accuracy": member["target_val_accuracy"],
                          "test_accuracy": member["target_test_accuracy"],
                          "test_macro_f1": member["target_test_macro_f1"]}))
    lines += [row("student alone", s["parameters"], s["macs"], summary["alone"]),
              row("student distilled", s["parameters"], s["macs"], summary["distilled"]),
              f"distillation gain {summary['gain']:+.3f} on the test windows; kept the {summary['kept']} student "
              f"({'better on validation' if summary['windows']['val'] else 'no validation windows to choose by'}), "
              f"test accuracy {s['test_accuracy']:.3f}; {summary['compression']}x fewer "
              f"parameters than the teacher; {summary['windows']['test']} test windows"]
    if summary.get("rounds", 1) > 1:
        lines.append(f"distilled in {summary['rounds']} rounds: the last student learnt from the teacher and the "
                     f"student before it on the {summary['windows']['train_unlabelled']} unlabelled windows")
    if summary.get("note"):
        lines.append(f"note: {summary['note']}")
    return lines
