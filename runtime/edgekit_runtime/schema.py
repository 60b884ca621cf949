"""Strict reading of a bundle's JSON files (manifest.json, preprocess.json) before anything uses them.

A bundle reaches the board from elsewhere, so its JSON is hostile until checked: sizes, nesting and number
lengths are bounded (json would otherwise recurse, or spend seconds on a 5000-digit integer), NaN and
Infinity are refused, and every field the runtime reads has its type and range checked here, so a refusal is
one line naming the file and the field instead of a traceback or NaN predictions later on.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path, PurePosixPath

from .errors import UserError

MAX_JSON_BYTES = 4 << 20  # the largest preprocess.json (a filter, 1000 channels) is well under 1 MiB
MAX_DEPTH = 12  # the deepest legitimate nesting is filter.sos (3 levels) inside a model entry
MAX_NUMBER_CHARS = 40  # a float64 needs at most 25 characters
MAX_FILES = 64  # files in a bundle
MAX_PATH_PARTS = 4  # directories deep a bundle file may be
MAX_MODELS = 16
MAX_CHANNELS = 1024
MAX_CLASSES = 10_000
MAX_WINDOW = 1 << 20  # samples per window
MAX_RATE = 1e6  # Hz
MAX_SECTIONS = 64  # second-order sections of the IIR filter
MAX_VALUE = 1e30  # normalisation statistics and filter coefficients: far beyond any sensor, well inside float32
SHA256 = re.compile(r"[0-9a-f]{64}")


class _Refused:
    """Stands in for a number the parser refused, so that the error can name its field."""

    def __init__(self, why: str):
        self.why = why


def _parse_int(s: str):
    return int(s) if len(s) <= MAX_NUMBER_CHARS else _Refused(f"a number of {len(s)} digits")


def _parse_float(s: str):
    if len(s) > MAX_NUMBER_CHARS:
        return _Refused(f"a number of {len(s)} characters")
    v = float(s)
    return v if math.isfinite(v) else _Refused(f"{s[:20]} is beyond the range of a float")


def _parse_constant(s: str):
    return _Refused(f"{s} is not a number")


def _field(path: str, key) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)


def _check_tree(value, where: str) -> None:
    """Refused numbers and excessive nesting anywhere in a parsed document, named by their field."""
    stack = [(value, "", 1)]
    while stack:
        v, path, depth = stack.pop()
        if isinstance(v, _Refused):
            raise UserError(f"{where}: {path or 'top level'}: refusing {v.why}")
        if depth > MAX_DEPTH:
            raise UserError(f"{where}: {path}: nested more than {MAX_DEPTH} levels deep")
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        stack += [(x, _field(path, k), depth + 1) for k, x in items]


def load_json(data: bytes, where: str) -> dict:
    """Parse one of a bundle's JSON files (`where` names it in errors) within the limits above."""
    if len(data) > MAX_JSON_BYTES:
        raise UserError(f"{where}: larger than {MAX_JSON_BYTES >> 20} MiB")
    try:
        value = json.loads(data.decode("utf-8"), parse_int=_parse_int, parse_float=_parse_float,
                           parse_constant=_parse_constant)
    except RecursionError:
        raise UserError(f"{where}: nested more than {MAX_DEPTH} levels deep") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a JSON object, got {_kind(value)}")
    _check_tree(value, where)
    return value


def _kind(v) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(v), type(v).__name__)


class Checker:
    """Type and range checks that fail with `<file>: <field>: <problem>`."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, field: str, problem: str):
        raise UserError(f"{self.where}: {field}: {problem}")

    def obj(self, v, field: str, optional: bool = False) -> dict | None:
        if v is None and optional:
            return None
        if not isinstance(v, dict):
            self.fail(field, f"expected an object, got {_kind(v)}")
        return v

    def string(self, v, field: str, max_len: int = 256) -> str:
        if not isinstance(v, str):
            self.fail(field, f"expected a string, got {_kind(v)}")
        if not v or len(v) > max_len:
            self.fail(field, f"expected 1 to {max_len} characters, got {len(v)}")
        return v

    def integer(self, v, field: str, lo: int, hi: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(field, f"expected an integer, got {_kind(v)}")
        if not lo <= v <= hi:
            self.fail(field, f"expected {lo} to {hi}, got {v}")
        return v

    def number(self, v, field: str, lo: float = -MAX_VALUE, hi: float = MAX_VALUE, positive: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(field, f"expected a number, got {_kind(v)}")
        if not (lo <= v <= hi) or (positive and not v > 0):
            self.fail(field, f"expected a number in {'(' if positive else '['}{lo:g}, {hi:g}], got {v:g}")
        return float(v)

    def array(self, v, field: str, lo: int, hi: int) -> list:
        if not isinstance(v, list):
            self.fail(field, f"expected a list, got {_kind(v)}")
        if not lo <= len(v) <= hi:
            self.fail(field, f"expected {lo} to {hi} entries, got {len(v)}")
        return v

    def names(self, v, field: str, hi: int) -> list[str]:
        """A list of distinct non-empty strings (channels, classes)."""
        names = [self.string(s, f"{field}[{i}]") for i, s in enumerate(self.array(v, field, 1, hi))]
        if len(set(names)) != len(names):
            self.fail(field, "names repeat")
        return names

    def numbers(self, v, field: str, n: int, lo: float = -MAX_VALUE, hi: float = MAX_VALUE) -> list[float]:
        return [self.number(x, f"{field}[{i}]", lo, hi) for i, x in enumerate(self.array(v, field, n, n))]


def check_bundle_path(name: str) -> str | None:
    """Why `name` cannot be a file of a bundle (a relative POSIX path inside it), or None if it can."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\\" in name or "\0" in name or name != str(p):
        return "outside the bundle"
    if len(p.parts) > MAX_PATH_PARTS or len(name) > 255:
        return f"nested more than {MAX_PATH_PARTS} levels or longer than 255 characters"
    return None


def check_manifest(m: dict, where: str) -> None:
    """Types and ranges of what the runtime reads from manifest.json (format already checked)."""
    c = Checker(where)
    files = c.obj(m.get("files"), "files")
    if not 1 <= len(files) <= MAX_FILES:
        c.fail("files", f"expected 1 to {MAX_FILES} files, got {len(files)}")
    for name, digest in files.items():
        if (why := check_bundle_path(name)) is not None:
            c.fail(f"files[{name!r}]", f"names a file {why}")
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            c.fail(f"files[{name!r}]", "expected a sha256 digest (64 lowercase hex digits)")
    if m["format"] == 1:
        entries = [("model", c.obj(m.get("model"), "model"))]
    else:
        entries = [(f"models[{i}]", c.obj(e, f"models[{i}]"))
                   for i, e in enumerate(c.array(m.get("models"), "models", 1, MAX_MODELS))]
    for field, e in entries:
        c.string(e.get("file"), f"{field}.file")
        for key in ("format", "precision"):
            if key in e:
                c.string(e[key], f"{field}.{key}", 16)
        if "bytes" in e:
            c.integer(e["bytes"], f"{field}.bytes", 0, 1 << 40)
        c.obj(e.get("verification"), f"{field}.verification", optional=True)
        c.obj(e.get("quantization"), f"{field}.quantization", optional=True)
    c.obj(m.get("verification"), "verification", optional=True)
    c.obj(m.get("versions"), "versions", optional=True)
    if "classes" in m:
        c.names(m["classes"], "classes", MAX_CLASSES)
    if (inp := c.obj(m.get("input"), "input", optional=True)) is not None:
        c.names(inp.get("channels"), "input.channels", MAX_CHANNELS)
        c.number(inp.get("sampling_rate"), "input.sampling_rate", 0, MAX_RATE, positive=True)
        c.integer(inp.get("window"), "input.window", 1, MAX_WINDOW)
        c.integer(inp.get("stride"), "input.stride", 1, MAX_WINDOW)
    if (ev := c.obj(m.get("eval"), "eval", optional=True)) is not None:
        c.string(ev.get("file"), "eval.file")
        c.integer(ev.get("windows"), "eval.windows", 0, 1 << 24)
        if not isinstance(ev.get("filtered", False), bool):
            c.fail("eval.filtered", f"expected true or false, got {_kind(ev.get('filtered'))}")


def check_preprocess(p: dict, where: str) -> None:
    """Types, ranges, finiteness and filter stability of preprocess.json, so that finite input always gives
    finite model input."""
    c = Checker(where)
    channels = c.names(p.get("channels"), "channels", MAX_CHANNELS)
    c.names(p.get("classes"), "classes", MAX_CLASSES)
    c.number(p.get("sampling_rate"), "sampling_rate", 0, MAX_RATE, positive=True)
    c.integer(p.get("window"), "window", 1, MAX_WINDOW)
    c.integer(p.get("stride"), "stride", 1, MAX_WINDOW)
    for key in ("normalize", "detrend"):
        if key in p:
            c.string(p[key], key, 16)
    for key, lo in (("mean", -MAX_VALUE), ("std", 0.0)):
        if p.get(key) is not None:
            c.numbers(p[key], key, len(channels), lo)
    if (r := c.obj(p.get("resample"), "resample", optional=True)) is not None:
        c.number(r.get("max_gap_s"), "resample.max_gap_s", 0, 1e9, positive=True)
    if (f := c.obj(p.get("filter"), "filter", optional=True)) is not None:
        sos = c.array(f.get("sos"), "filter.sos", 1, MAX_SECTIONS)
        zi = c.array(f.get("zi"), "filter.zi", len(sos), len(sos))
        for i, (s, z) in enumerate(zip(sos, zi)):
            b0, b1, b2, a0, a1, a2 = c.numbers(s, f"filter.sos[{i}]", 6)
            c.numbers(z, f"filter.zi[{i}]", 2)
            if a0 != 1.0:
                c.fail(f"filter.sos[{i}]", f"a0 must be 1, got {a0:g}")
            # poles of z^2 + a1 z + a2 lie inside the unit circle exactly when |a2| < 1 and |a1| < 1 + a2
            if not (abs(a2) < 1 and abs(a1) < 1 + a2):
                c.fail(f"filter.sos[{i}]", f"unstable section (a1={a1:g}, a2={a2:g}: poles on or outside the "
                                           "unit circle)")
        if "kind" in f and not isinstance(f["kind"], str):
            c.fail("filter.kind", f"expected a string, got {_kind(f['kind'])}")
        if "cutoff_hz" in f:
            cut = c.array(f["cutoff_hz"], "filter.cutoff_hz", 0, 2)
            c.numbers(cut, "filter.cutoff_hz", len(cut), 0)
        if "order" in f:
            c.integer(f["order"], "filter.order", 0, 2 * MAX_SECTIONS)


def read_limited(path: Path, where: str, limit: int = MAX_JSON_BYTES) -> bytes:
    """A file's bytes, refusing one larger than `limit` before reading it."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise UserError(f"{where}: file not found") from None
    except OSError as e:
        raise UserError(f"{where}: cannot read ({e.strerror})") from None
    if len(data) > limit:
        raise UserError(f"{where}: larger than {limit >> 20} MiB")
    return data
