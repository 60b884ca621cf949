"""Command-line options shared by the compile-side commands (edgekit.cli, edgekit.teacher.cli, ...), and the data
spec they describe."""

from __future__ import annotations

import click


def csv_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def data_options(f):
    """Options that say which data to load; shared by every command that reads a dataset."""
    opts = [
        click.argument("dataset"),
        click.option("--window", type=click.IntRange(min=1),
                     help="Samples per window (recordings: Daphnet and your own files)."),
        click.option("--stride", type=click.IntRange(min=1),
                     help="Samples between window starts (default: the window length; Daphnet: 128)."),
        click.option("--time-column", help="Time column of your files: seconds or ISO-8601 [default: time]."),
        click.option("--label-column", help="Label column of your files (a window takes its majority label)."),
        click.option("--channels", help="Comma-separated channel columns of your files [default: all others]."),
        click.option("--uncertainty-suffix", help="Per-channel uncertainty columns are CHANNEL+SUFFIX (e.g. _sigma)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def data_spec(dataset, window, stride, time_column, label_column, channels, uncertainty_suffix) -> dict:
    return {"dataset": dataset, "window": window, "stride": stride, "time_column": time_column,
            "label_column": label_column, "channels": csv_list(channels), "uncertainty_suffix": uncertainty_suffix}


def split_options(f):
    """Options that say how to split the data; shared by every command that trains."""
    opts = [
        click.option("--split", "split_method", type=click.Choice(["random", "group"]),
                     help="random: stratified by class; group: hold out whole groups. Default: the benchmark's "
                          "own train/test split for bundled sets that have one, else random."),
        click.option("--test-groups", help="Comma-separated groups to test on with --split group."),
        click.option("--val", default=0.2, show_default=True,
                     help="Validation fraction, held out to measure training (train and distill then refit on "
                          "training + validation windows)."),
        click.option("--test", "test_fraction", default=0.2, show_default=True, help="Test fraction (random split)."),
        click.option("--seed", default=0, show_default=True, help="Seed for the split, initialisation and batches."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def recipe_options(f):
    """The training recipe (edgekit.train_settings.TrainSettings); shared by train and distill."""
    from .train_settings import TrainSettings

    d = TrainSettings()
    opts = [
        click.option("--steps", default=d.steps, show_default=True, type=click.IntRange(min=1),
                     help="Optimiser steps; the epochs follow from the number of training windows."),
        click.option("--epochs", type=click.IntRange(min=1), help="A fixed number of epochs instead of --steps."),
        click.option("--patience", type=click.IntRange(min=1), help="Stop early after this many epochs without a better validation "
                                                  "loss [default: no early stopping, keep the last weights]."),
        click.option("--lr", default=d.lr, show_default=True, help="Peak learning rate (warm-up, then cosine decay)."),
        click.option("--batch-size", default=d.batch_size, show_default=True, type=click.IntRange(min=1)),
        click.option("--label-smoothing", default=d.label_smoothing, show_default=True),
        click.option("--augment/--no-augment", default=d.augment, show_default=True,
                     help="Random gain, noise and time shift of every training batch."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f
