"""Bundles: what is copied to the board. A directory (or a .tar.gz of one) holding model file(s),
preprocess.json, manifest.json and optionally eval.npz (evaluation windows before preprocessing, with labels).

The manifest lists the sha256 of every file, and every file in the bundle must be listed; a bundle with a
missing or unlisted file, a changed byte, a model in an unknown format or ONNX external data outside the
bundle is refused before anything is loaded, so a corrupted or tampered copy never produces predictions.
manifest.json and preprocess.json are checked against a schema (schema.py), and manifest.sig, when present or
required by a trusted key, against the manifest (signing.py). A `.tar.gz` is unpacked member by member into a
private temporary directory, refusing absolute paths, `..`, links, anything but regular files and
directories, deep trees and too many members. Nothing is ever unpickled.

Manifest format 1 is the single-model directory `edgekit export` writes; format 2 (`edgekit bundle`) lists
several models (formats and precisions), the expected input and the evaluation windows.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .engine import PRECISIONS
from . import schema
from .errors import UserError
from .onnx_refs import external_data
from .preprocess import Preprocessing
from .signing import SIGNATURE, check_signature, trusted_keys

MANIFEST = "manifest.json"
PREPROCESS = "preprocess.json"
EVAL = "eval.npz"
MODEL_FORMATS = {".onnx": "onnx", ".tflite": "tflite"}
MANIFEST_FORMATS = (1, 2)
TAR_SUFFIXES = (".tar.gz", ".tgz")
MAX_UNPACKED_BYTES = 1 << 30  # a bundle is kilobytes to megabytes; refuse archives that would fill the disk
MAX_MEMBERS = 4 * schema.MAX_FILES  # archive members (files and directories)
MAX_EVAL_BYTES = 256 << 20  # eval.npz, uncompressed


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
    except (RecursionError, ValueError) as e:  # deep nesting; integers of thousands of digits
        raise UserError(f"{path}: not readable JSON ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def model_format(name: str) -> str | None:
    return MODEL_FORMATS.get(PurePosixPath(name).suffix.lower())


@dataclass(frozen=True)
class ModelFile:
    path: Path
    format: str  # onnx | tflite
    precision: str  # fp32 | fp16 | int8
    verification: dict
    quantization: dict | None = None  # int8: {"method": "ptq" | "qat", ...} (edgekit quantize)

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Bundle:
    path: Path  # what the user named: a directory or a .tar.gz
    root: Path  # the directory holding the files (a private temporary copy for a .tar.gz)
    models: tuple[ModelFile, ...]  # in the manifest's order of preference
    preprocessing: Preprocessing
    classes: tuple[str, ...]
    manifest: dict
    signer: str | None = None  # fingerprint of the key that signed manifest.json (checked), None if unsigned

    @property
    def model_file(self) -> Path:
        return self.models[0].path

    def eval_set(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The embedded evaluation windows: (raw windows [N, C, T] float32, class indices [N]), or None."""
        name = (self.manifest.get("eval") or {}).get("file")
        if name is None:
            return None
        where = f"{self.path}: {name}"
        try:  # an .npz is a zip of .npy arrays: check the directory before numpy inflates anything
            with zipfile.ZipFile(self.root / name) as z:
                members = {i.filename: i.file_size for i in z.infolist()}
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
            raise UserError(f"{where}: not an .npz archive ({e or 'empty'})") from None
        if set(members) != {"windows.npy", "labels.npy"}:
            raise UserError(f"{where}: expected exactly the arrays 'windows' and 'labels', got "
                            f"{', '.join(sorted(members)) or 'none'}")
        if sum(members.values()) > MAX_EVAL_BYTES:
            raise UserError(f"{where}: unpacks to more than {MAX_EVAL_BYTES >> 20} MiB")
        try:
            with np.load(self.root / name, allow_pickle=False) as z:
                windows, labels = z["windows"], z["labels"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise UserError(f"{self.path}: unreadable evaluation windows {name} ({e})") from None
        c, t = len(self.preprocessing.channels), self.preprocessing.window
        if windows.ndim != 3 or windows.shape[1:] != (c, t) or labels.shape != (len(windows),) \
                or not np.issubdtype(labels.dtype, np.integer) or labels.min(initial=0) < 0 \
                or labels.max(initial=0) >= len(self.classes):
            raise UserError(f"{where}: windows/labels: does not hold [N, {c}, {t}] windows with class indices")
        if not np.issubdtype(windows.dtype, np.floating) and not np.issubdtype(windows.dtype, np.integer):
            raise UserError(f"{where}: windows: expected numbers, got {windows.dtype}")
        windows = windows.astype(np.float32)
        if not np.isfinite(windows).all():
            raise UserError(f"{where}: windows: holds NaN or infinite values (or values beyond float32)")
        return windows, labels.astype(np.int64)

    def eval_inputs(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The evaluation windows as the model takes them, and their labels, or None. Windows cut from a filtered
        recording (manifest eval.filtered: as `edgekit run` cut them) get the window-level steps only; windows
        that are whole cases get every step, each filtered from its first sample."""
        evals = self.eval_set()
        if evals is None:
            return None
        pre = self.preprocessing
        filtered = (self.manifest.get("eval") or {}).get("filtered", False)
        return (pre.transform_windows if filtered else pre.prepare_windows)(evals[0]), evals[1]


def _bundle_files(root: Path, where: Path) -> set[str]:
    """Every file under the bundle directory, as a relative POSIX path; refuses links, special files and trees
    deeper or larger than a bundle can be."""
    found, stack = set(), [(root, ())]
    while stack:
        directory, parts = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as e:
            raise UserError(f"{where}: cannot list {'/'.join(parts) or 'the bundle'} ({e.strerror})") from None
        for e in entries:
            name = "/".join((*parts, e.name))
            if e.is_symlink():
                raise UserError(f"{where}: {name} is a link; a bundle holds regular files only")
            if len(parts) + 1 > schema.MAX_PATH_PARTS:
                raise UserError(f"{where}: {name} is nested more than {schema.MAX_PATH_PARTS} levels deep")
            if e.is_dir():
                stack.append((Path(e.path), (*parts, e.name)))
            elif e.is_file():
                found.add(name)
            else:
                raise UserError(f"{where}: {name} is not a regular file")
            if len(found) + len(stack) > schema.MAX_FILES:
                raise UserError(f"{where}: more than {schema.MAX_FILES} files")
    return found


def _verify_files(root: Path, where: Path, manifest: dict) -> dict:
    files = manifest["files"]
    present = _bundle_files(root, where)
    for name, digest in files.items():
        if name not in present:
            raise UserError(f"{where}: {name} is listed in the manifest but missing")
        if sha256_file(root / name) != digest:
            raise UserError(f"{where}: {name} does not match its sha256 in the manifest (corrupted or modified)")
    if PREPROCESS not in files:
        raise UserError(f"{where}: {PREPROCESS} is not covered by the manifest's sha256 table")
    # every byte a model may read must be covered, so no file may sit in the bundle unlisted
    for name in sorted(present - set(files) - {MANIFEST, SIGNATURE}):
        raise UserError(f"{where}: {name} is in the bundle but not in the manifest's sha256 table")
    return files


def _check_external_data(root: Path, where: Path, name: str, files: dict) -> None:
    """ONNX external data must be files of the bundle, listed (and so hashed) in the manifest."""
    for location in external_data(root / name):
        target = str(PurePosixPath(name).parent / location)  # onnxruntime resolves it next to the model
        why = schema.check_bundle_path(target)
        if why is not None:
            raise UserError(f"{where}: {name}: external data {location!r} is {why}")
        if target not in files:
            raise UserError(f"{where}: {name}: external data {location!r} is not covered by the manifest's "
                            "sha256 table")


def _model_entries(where: Path, manifest: dict, files: dict) -> list[dict]:
    if manifest.get("format") == 1:
        entry = manifest.get("model") or {}
        models = [{**{k: entry[k] for k in ("format", "precision") if k in entry}, "file": entry.get("file"),
                   "verification": manifest.get("verification", {}), "quantization": manifest.get("quantization")}]
    else:
        models = manifest.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        raise UserError(f"{where}: manifest lists no models")
    for m in models:
        name = m.get("file")
        if name not in files:
            raise UserError(f"{where}: model {name!r} is not covered by the manifest's sha256 table")
        fmt = model_format(name)
        if fmt is None or m.get("format", fmt) != fmt:
            raise UserError(f"{where}: {name}: unknown model format {m.get('format', PurePosixPath(name).suffix)!r}; "
                            f"this runtime reads {', '.join(sorted(set(MODEL_FORMATS.values())))}")
        if m.get("precision", "fp32") not in PRECISIONS:
            raise UserError(f"{where}: {name}: unknown precision {m.get('precision')!r}")
    return models


def _check_input(where: Path, manifest: dict, pre: Preprocessing, classes: list) -> None:
    """The manifest's description of the expected input must agree with preprocess.json."""
    expected = manifest.get("input")
    if expected is not None:
        actual = {"channels": list(pre.channels), "sampling_rate": pre.sampling_rate, "window": pre.window,
                  "stride": pre.stride}
        diff = [k for k in actual if k in expected and expected[k] != actual[k]]
        if diff:
            raise UserError(f"{where}: manifest and {PREPROCESS} disagree on {', '.join(diff)}")
    if "classes" in manifest and manifest["classes"] != classes:
        raise UserError(f"{where}: manifest and {PREPROCESS} disagree on the class names")


def load_bundle(path: str | Path, trust: list[bytes] | None = None) -> Bundle:
    """Verify and read a bundle (directory or .tar.gz); raises UserError with a one-line reason when unusable.
    With `trust` (raw Ed25519 public keys), the manifest must be signed by one of them. None (the default) takes
    the board's own configuration (signing.trusted_keys: $EDGEKIT_TRUST_DIR or /etc/edgekit/trust), so a Python
    caller is held to what the command line enforces; [] checks digests (and any signature) only."""
    path = Path(path)
    if path.is_file() and path.name.endswith(TAR_SUFFIXES):
        root = _unpack(path)
    elif path.is_dir():
        root = path
    elif path.exists():
        raise UserError(f"{path}: not a bundle (expected a directory or a {' / '.join(TAR_SUFFIXES)} archive)")
    else:
        raise UserError(f"{path}: no such bundle")
    # the signature is checked on the exact bytes parsed below, before anything else in them is believed
    manifest_bytes = schema.read_limited(root / MANIFEST, f"{path}: {MANIFEST}")
    sig_file = root / SIGNATURE
    sig_bytes = schema.read_limited(sig_file, f"{path}: {SIGNATURE}", 4096) if sig_file.exists() else None
    signer = check_signature(manifest_bytes, sig_bytes, trusted_keys() if trust is None else trust, str(path))
    manifest = schema.load_json(manifest_bytes, f"{path}: {MANIFEST}")
    if manifest.get("format") not in MANIFEST_FORMATS or isinstance(manifest.get("format"), bool):
        raise UserError(f"{path}: {MANIFEST}: format: unsupported manifest format {manifest.get('format')!r} "
                        f"(this runtime reads {', '.join(map(str, MANIFEST_FORMATS))}); upgrade edgekit-runtime")
    schema.check_manifest(manifest, f"{path}: {MANIFEST}")
    files = _verify_files(root, path, manifest)
    models = _model_entries(path, manifest, files)
    for m in models:
        if model_format(m["file"]) == "onnx":
            _check_external_data(root, path, m["file"], files)
    pre_json = schema.load_json(schema.read_limited(root / PREPROCESS, f"{path}: {PREPROCESS}"),
                                f"{path}: {PREPROCESS}")
    schema.check_preprocess(pre_json, f"{path}: {PREPROCESS}")
    classes = pre_json["classes"]
    pre = Preprocessing.from_json(pre_json)
    _check_input(path, manifest, pre, classes)
    eval_name = (manifest.get("eval") or {}).get("file")
    if eval_name is not None and eval_name not in files:
        raise UserError(f"{path}: evaluation windows {eval_name!r} are not covered by the manifest's sha256 table")
    return Bundle(
        path=path,
        root=root,
        models=tuple(ModelFile(root / m["file"], model_format(m["file"]), m.get("precision", "fp32"),
                               m.get("verification", {}), m.get("quantization")) for m in models),
        preprocessing=pre,
        classes=tuple(str(c) for c in classes),
        manifest=manifest,
        signer=signer,
    )


def _unpack(archive: Path) -> Path:
    """Unpack into a private temporary directory removed at exit; return the directory holding manifest.json."""
    tmp = Path(tempfile.mkdtemp(prefix="edgekit-bundle-"))
    atexit.register(shutil.rmtree, tmp, True)
    total = members = 0
    try:
        with tarfile.open(archive, "r:gz") as tf:
            for m in tf:
                p = PurePosixPath(m.name)
                if p.is_absolute() or ".." in p.parts or "\\" in m.name or m.name.startswith("/"):
                    raise UserError(f"{archive}: refusing archive member outside the bundle: {m.name}")
                members += 1
                if members > MAX_MEMBERS:  # a bundle is a handful of files; stop before creating 200k inodes
                    raise UserError(f"{archive}: more than {MAX_MEMBERS} archive members")
                if len(p.parts) > schema.MAX_PATH_PARTS + 1:  # +1: the bundle's own top directory
                    raise UserError(f"{archive}: {m.name[:80]}: nested more than {schema.MAX_PATH_PARTS + 1} "
                                    "levels deep")
                if m.issym() or m.islnk():
                    raise UserError(f"{archive}: refusing link in archive: {m.name}")
                target = tmp.joinpath(*p.parts) if p.parts and p.parts != (".",) else tmp
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not m.isfile():
                    raise UserError(f"{archive}: refusing special file in archive: {m.name}")
                total += m.size
                if total > MAX_UNPACKED_BYTES:
                    raise UserError(f"{archive}: archive unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB")
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(m)
                with open(target, "xb") as out:  # "x": a second member with the same name is refused
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{archive}: not a readable .tar.gz bundle ({e})") from None
    except UserError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if (tmp / MANIFEST).is_file():
        return tmp
    subdirs = [d for d in tmp.iterdir() if d.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / MANIFEST).is_file() and len(list(tmp.iterdir())) == 1:
        return subdirs[0]
    raise UserError(f"{archive}: no {MANIFEST} at the top of the archive")
