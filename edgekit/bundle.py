"""`edgekit bundle`: pack exported model directories into one verified bundle for the board.

A bundle holds every model file (formats and precisions) of one trained model, its preprocess.json, the raw
evaluation windows of the checkpoint's test split (eval.npz, plain arrays: nothing to unpickle) and a
manifest (format 2) with the sha256 of every file, versions, verification metrics, classes and the expected
input. Each model is run by the board runtime on the evaluation windows while bundling, and its accuracy is
recorded, so `edgekit bench` on the board can be checked against it. Written atomically, as a directory or
a `.tar.gz`. With a signing key, manifest.sig holds an Ed25519 signature of manifest.json, which boards that
trust the key require (edgekit_runtime.signing).
"""

from __future__ import annotations

import io
import json
import platform
import shutil
import tarfile
import tempfile
from pathlib import Path

import click
import numpy as np

from edgekit_runtime import __version__ as runtime_version
from edgekit_runtime.engine import backend_for, open_model
from edgekit_runtime.errors import UserError
from edgekit_runtime.files import atomic_directory, atomic_write, check_not_an_input
from edgekit_runtime.model_dir import EVAL, MANIFEST, PREPROCESS, TAR_SUFFIXES, load_bundle, sha256_file
from edgekit_runtime.signing import SIGNATURE, sign_manifest

from . import __version__
from .settings import BundleSettings, from_options, options

FORMAT = 2


def _eval_windows(checkpoint: str, limit: int):
    """At most `limit` test-split windows of the checkpoint, before the model's preprocessing (a WindowSet),
    stratified by taking every k-th window, and the checkpoint's class names."""
    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    test = ckpt.windows("test")
    if len(test) == 0:
        raise UserError(f"{checkpoint}: the checkpoint's test split is empty; nothing to embed")
    return test.subset(np.linspace(0, len(test) - 1, min(limit, len(test))).round().astype(int)), ckpt.classes


def _accuracy(model_file, pre, evals) -> float:
    from .data import model_inputs

    model = open_model(model_file)
    x = model_inputs(pre, evals)
    pred = np.concatenate([model.logits(x[i : i + 64]).argmax(axis=1) for i in range(0, len(x), 64)])
    return float((pred == evals.labels).mean())


def _eval_entry(evals) -> dict | None:
    if evals is None:
        return None
    entry = {"file": EVAL, "windows": len(evals)}
    if evals.filtered:  # cut from filtered recordings: the runtime applies the window-level steps only
        entry["filtered"] = True
    return entry


def build_bundle(model_dirs: list[str], out: str, checkpoint: str | None = None,
                 settings: BundleSettings = BundleSettings(), overwrite: bool = False, sign: str | None = None) -> dict:
    """Write the bundle, its manifest signed with the private key file `sign` if given; return its manifest."""
    if not model_dirs:
        raise UserError("give at least one model directory written by `edgekit export`")
    check_not_an_input(out, *model_dirs, *([checkpoint] if checkpoint else []))
    sources = [load_bundle(d, trust=[]) for d in model_dirs]  # verifies every source against its own manifest
    first = sources[0]
    pre_json = (first.root / PREPROCESS).read_text()
    for s in sources[1:]:
        if json.loads((s.root / PREPROCESS).read_text()) != json.loads(pre_json):
            raise UserError(f"{s.path}: its preprocessing differs from {first.path}'s; a bundle holds one model "
                            "exported in several formats/precisions")
    evals = None
    if checkpoint is not None:
        evals, classes = _eval_windows(checkpoint, settings.eval_windows)
        if tuple(classes) != first.classes:
            raise UserError(f"{checkpoint}: its classes differ from the exported models'")

    files, models = {}, []
    for s in sources:
        for m in s.models:
            name = f"model-{m.precision}{m.path.suffix}"
            if name in files:
                raise UserError(f"two {m.format} {m.precision} models given ({m.path} and an earlier one)")
            files[name] = m.path
            entry = {"file": name, "format": m.format, "precision": m.precision, "bytes": m.path.stat().st_size,
                     "verification": m.verification, "source": str(s.path)}
            if m.quantization:
                entry["quantization"] = m.quantization
            if evals is not None and backend_for(m.format) is not None:
                entry["verification"] = {**m.verification, "eval_accuracy": _accuracy(m, first.preprocessing, evals)}
            models.append(entry)

    with tempfile.TemporaryDirectory() as staging:
        root = Path(staging)
        for name, src in files.items():
            shutil.copyfile(src, root / name)
        (root / PREPROCESS).write_text(pre_json)
        if evals is not None:
            np.savez_compressed(root / EVAL, windows=evals.values, labels=evals.labels.astype(np.int64))
        pre = first.preprocessing
        manifest = {
            "format": FORMAT,
            "files": {n: sha256_file(root / n) for n in sorted(p.name for p in root.iterdir())},
            "models": models,
            "classes": list(first.classes),
            "input": {"channels": list(pre.channels), "sampling_rate": pre.sampling_rate, "window": pre.window,
                      "stride": pre.stride},
            "model": {k: v for k, v in first.manifest.get("model", {}).items()
                      if k in ("architecture", "parameters", "test_accuracy")},
            "eval": _eval_entry(evals),
            "versions": {**first.manifest.get("versions", {}), "edgekit": __version__,
                         "edgekit_runtime": runtime_version, "python": platform.python_version()},
        }
        manifest_bytes = (json.dumps(manifest, indent=2) + "\n").encode()
        (root / MANIFEST).write_bytes(manifest_bytes)
        if sign is not None:
            (root / SIGNATURE).write_bytes(sign_manifest(manifest_bytes, sign))
        load_bundle(root, trust=[])  # the runtime must accept what we wrote (and checks any signature)
        if out.endswith(TAR_SUFFIXES):
            _write_tar(root, out, overwrite)
        else:
            with atomic_directory(out, overwrite=overwrite) as tmp:
                for p in root.iterdir():
                    shutil.copyfile(p, tmp / p.name)
    return manifest


def _write_tar(root: Path, out: str, overwrite: bool) -> None:
    """A reproducible archive: regular files only, sorted, no owner or time stamps."""
    if Path(out).exists() and not overwrite:
        raise UserError(f"{out}: already exists (pass --overwrite to replace it)")
    with atomic_write(out, binary=True) as f:
        with tarfile.open(fileobj=f, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
            for p in sorted(root.iterdir()):
                info = tarfile.TarInfo(p.name)
                data = p.read_bytes()
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tf.addfile(info, io.BytesIO(data))


@click.command("bundle")
@click.argument("model_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(),
              help="Bundle to write: a directory, or a .tar.gz / .tgz archive.")
@click.option("--checkpoint", type=click.Path(file_okay=False),
              help="Embed raw windows of this checkpoint's test split (eval.npz) and record each model's accuracy "
                   "on them; `edgekit bench` reports the board's accuracy on the same windows.")
@options(BundleSettings)
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle.")
@click.option("--sign", "sign_key", type=click.Path(exists=True, dir_okay=False), metavar="KEY",
              help="Sign the manifest with this Ed25519 private key (from `edgekit keygen KEY`); boards that trust "
                   "KEY.pub (`--trust` or their trust directory) refuse bundles not signed by it.")
def bundle_command(model_dirs, out, checkpoint, overwrite, sign_key, **kwargs):
    """Pack MODEL_DIRS (one model exported by `edgekit export` in one or more formats/precisions) into a bundle
    for the board, with a manifest of sha256 digests the runtime checks before loading."""
    m = build_bundle(list(model_dirs), out, checkpoint=checkpoint, settings=from_options(BundleSettings, kwargs),
                     overwrite=overwrite, sign=sign_key)
    for e in m["models"]:
        acc = e["verification"].get("eval_accuracy")
        acc = f", eval accuracy {acc:.3f}" if acc is not None else ""
        click.echo(f"model        {e['file']} ({e['bytes'] / 1024:.1f} KiB, {e['format']} {e['precision']}{acc})")
    if m["eval"]:
        click.echo(f"eval         {m['eval']['windows']} raw test windows")
    signed = f", signed in {SIGNATURE}" if sign_key else ""
    click.echo(f"wrote        {out} ({len(m['files'])} files, sha256 in {MANIFEST}{signed})")
