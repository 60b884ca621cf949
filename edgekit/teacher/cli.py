"""Teacher commands: pretrain, finetune, embed."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit_runtime.errors import UserError

from ..options import csv_list, data_options, data_spec, split_options
from ..train_settings import FINETUNE
from .settings import PretrainSettings

PRETRAIN = PretrainSettings()

SIZE_CHOICE = click.Choice(["tiny", "small", "base", "large"])
ATTENTION_CHOICE = click.Choice(["dense", "sparse", "scan"])


def _write_json(path, obj):
    if path:
        from edgekit_runtime.files import write_text_atomic

        write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


@click.command()
@data_options
@split_options
@click.option("--from", "start_from", help="Continue pretraining this teacher (\"general\": the shipped one, or a "
                                          "run directory) on DATASET instead of starting from scratch.")
@click.option("--size", type=SIZE_CHOICE, default="large", show_default=True,
              help="tiny 18k, small 100k, base 540k, large 1.2M parameters (any channel count).")
@click.option("--attention", type=ATTENTION_CHOICE, default="dense", show_default=True,
              help="dense: exact, O(N²) memory; sparse: block top-k, O(N·k·B); scan: exact, linear memory.")
@click.option("--patch", default=8, show_default=True, help="Samples per token.")
@click.option("--block", default=64, show_default=True, help="Key block size of sparse attention.")
@click.option("--topk", default=4, show_default=True, help="Blocks each query block attends to besides its own.")
@click.option("--no-time-bias", is_flag=True, help="Switch off the learned relative-time attention bias.")
@click.option("--steps", default=PRETRAIN.steps, show_default=True)
@click.option("--tokens-per-step", default=PRETRAIN.tokens_per_step, show_default=True, help="Tokens (patches of one channel) per batch.")
@click.option("--max-tokens", default=PRETRAIN.max_tokens, show_default=True,
              help="Longer windows are seen in random crops of this many tokens.")
@click.option("--lr", default=PRETRAIN.lr, show_default=True)
@click.option("--warmup", default=PRETRAIN.warmup, show_default=True, help="Linear warm-up steps, then cosine decay.")
@click.option("--mask-prob", default=PRETRAIN.mask.prob, show_default=True, help="Share of observed tokens in the loss.")
@click.option("--mask-random", default=PRETRAIN.mask.random, show_default=True, help="Of those (not kept): share given random values.")
@click.option("--mask-keep", default=PRETRAIN.mask.keep, show_default=True, help="Of those: share keeping their true value.")
@click.option("--mask-span", default=PRETRAIN.mask.span, show_default=True, help="Mask contiguous runs of this many tokens.")
@click.option("--eval-every", default=PRETRAIN.eval_every, show_default=True, help="Steps between validation RMSE measurements.")
@click.option("--checkpoint-every", default=PRETRAIN.checkpoint_every, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), help="Run directory [default: runs/DATASET/teacher].")
@click.option("--resume", is_flag=True, help="Continue the run in --out with its recorded data and settings.")
@click.option("--overwrite", is_flag=True, help="Start afresh even if --out holds a run.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the summary as JSON here.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def pretrain(split_method, test_groups, val, test_fraction, seed, start_from, size, attention, patch, block, topk,
             no_time_bias, steps, tokens_per_step, max_tokens, lr, warmup, mask_prob, mask_random, mask_keep,
             mask_span, eval_every, checkpoint_every, out, resume, overwrite, json_out, quiet, **spec):
    """Pretrain the teacher on DATASET's training windows by masked reconstruction (labels are ignored).

    DATASET "general" rebuilds the general teacher that ships with edgekit (`make teacher`): the large encoder
    on the corpus of real unlabelled windows in edgekit/teacher/corpus.py with its fixed settings (the other
    training options do not apply), run in --out, written to edgekit/teacher/general/.

    Runs under `torchrun --nproc_per_node K` with DistributedDataParallel as it is. Validation RMSE on masked
    positions is reported every --eval-every steps; a killed run continues with --resume to the same weights.
    """
    from .run import start_or_resume

    spec = data_spec(**spec)
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
    model_options = dict(size=size, attention=attention, patch=patch, block=block, topk=topk,
                         time_bias=not no_time_bias)
    settings = dict(steps=steps, tokens_per_step=tokens_per_step, max_tokens=max_tokens, lr=lr, warmup=warmup, eval_every=eval_every,
                    checkpoint_every=checkpoint_every, seed=seed,
                    mask=dict(prob=mask_prob, random=mask_random, keep=mask_keep, span=mask_span))
    split = dict(split_method=split_method, test_groups=csv_list(test_groups), val=val, test=test_fraction)
    summary = start_or_resume(spec, out, model_options, settings, split, resume=resume, start_from=start_from,
                              progress=not quiet)
    if summary is None:  # not rank 0 under torchrun
        return
    _write_json(json_out, summary)
    click.echo(f"teacher      {summary['parameters']:,} parameters, attention {summary['attention']}\n"
               f"pretrained   {summary['steps']} steps on {summary['windows']['train']} windows\n"
               f"val RMSE     {summary['final_val_rmse']} on masked positions (normalised units)\n"
               f"checkpoint   {out}")


@click.command()
@data_options
@split_options
@click.option("--pretrained", help="The teacher to start from: \"general\" (shipped with edgekit, pretrained on a "
                                   "corpus of real recordings) or a pretraining run directory [default: from "
                                   "scratch].")
@click.option("--size", type=SIZE_CHOICE, default="small", show_default=True, help="Size when training from scratch.")
@click.option("--attention", type=ATTENTION_CHOICE, default="dense", show_default=True,
              help="Attention when training from scratch.")
@click.option("--labels-per-class", type=int, help="Use at most this many labelled training windows per class.")
@click.option("--freeze-encoder", is_flag=True, help="Train only the classification head.")
@click.option("--steps", default=FINETUNE.steps, show_default=True, help="Optimiser steps.")
@click.option("--epochs", type=int, help="A fixed number of epochs instead of --steps.")
@click.option("--patience", type=int, help="Stop early after this many epochs without a better validation loss.")
@click.option("--lr", default=FINETUNE.lr, show_default=True, help="Peak learning rate (warm-up, then cosine decay).")
@click.option("--batch-size", default=FINETUNE.batch_size, show_default=True)
@click.option("--augment/--no-augment", default=FINETUNE.augment, show_default=True,
              help="Random gain and noise on every training batch.")
@click.option("--out", type=click.Path(file_okay=False), help="Checkpoint directory [default: runs/DATASET/finetuned].")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the summary as JSON here.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def finetune(split_method, test_groups, val, test_fraction, seed, pretrained, size, attention, labels_per_class,
             freeze_encoder, steps, epochs, patience, lr, batch_size, augment, out, json_out, quiet, **spec):
    """Fine-tune a teacher on DATASET's labels (from scratch without --pretrained); report test accuracy/macro-F1."""
    from dataclasses import replace

    from .finetune import finetune as run

    spec = data_spec(**spec)
    out = out or f"runs/{Path(spec['dataset']).name}/finetuned"
    settings = replace(FINETUNE, steps=steps, epochs=epochs, patience=patience, lr=lr, batch_size=batch_size,
                       augment=augment, seed=seed)
    summary = run(spec, out, pretrained=pretrained, size=size, attention=attention,
                  labels_per_class=labels_per_class, train_encoder=not freeze_encoder, split_method=split_method,
                  test_groups=csv_list(test_groups), val=val, test=test_fraction, settings=settings,
                  progress=not quiet)
    _write_json(json_out, summary)
    click.echo(f"teacher      {summary['parameters']:,} parameters, "
               f"{'pretrained' if pretrained else 'from scratch'}, {summary['windows']['train']} labelled windows\n"
               f"test         accuracy {summary['test_accuracy']:.3f}, macro-F1 {summary['test_macro_f1']:.3f}\n"
               f"checkpoint   {out}")


@click.command()
@click.argument("checkpoint", type=click.Path(file_okay=False))
@data_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .npy file.")
@click.option("--tokens", is_flag=True, help="Per-token embeddings [N, L, d] instead of pooled [N, d].")
def embed(checkpoint, out, tokens, **spec):
    """Write the teacher's embeddings of every window of DATASET to a .npy file."""
    from ..data import load_spec
    from .finetune import embed as run

    shape = run(checkpoint, load_spec(data_spec(**spec)), out, tokens=tokens)
    click.echo(f"wrote {list(shape)} embeddings to {out}")
