"""A model directory as written by `edgekit export`: model file, preprocess.json and manifest.json.

The manifest lists the sha256 of every file; a directory whose files do not match it is refused before anything
is loaded, so a corrupted or tampered copy on the board never produces predictions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .preprocess import Preprocessing

MANIFEST = "manifest.json"
PREPROCESS = "preprocess.json"
MODEL_SUFFIXES = (".onnx",)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


@dataclass(frozen=True)
class ModelDir:
    path: Path
    model_file: Path
    preprocessing: Preprocessing
    classes: tuple[str, ...]
    manifest: dict


def verify_manifest(path: Path, manifest: dict) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise UserError(f"{path / MANIFEST}: no 'files' table with sha256 digests")
    for name, digest in files.items():
        f = path / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise UserError(f"{path / MANIFEST}: refusing file path outside the model directory: {name}")
        if not f.is_file():
            raise UserError(f"{path}: {name} is listed in the manifest but missing")
        if sha256_file(f) != digest:
            raise UserError(f"{path}: {name} does not match its sha256 in the manifest (corrupted or modified)")


def load_model_dir(path: str | Path) -> ModelDir:
    """Read and check a model directory; raises UserError with a one-line reason when it is unusable."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a model directory")
    manifest = read_json(path / MANIFEST)
    verify_manifest(path, manifest)
    pre = read_json(path / PREPROCESS)
    models = [n for n in manifest["files"] if n.endswith(MODEL_SUFFIXES)]
    if len(models) != 1:
        raise UserError(f"{path}: expected exactly one model file ({', '.join(MODEL_SUFFIXES)}), found {models}")
    classes = pre.get("classes")
    if not isinstance(classes, list) or not classes:
        raise UserError(f"{path / PREPROCESS}: missing the list of class names ('classes')")
    return ModelDir(
        path=path,
        model_file=path / models[0],
        preprocessing=Preprocessing.from_json(pre),
        classes=tuple(str(c) for c in classes),
        manifest=manifest,
    )
