"""Recipes: one TOML file that says what `edgekit pipeline` builds, checked completely before any training.

Every key has a type and a default; choices are named. An unknown key, a wrong type, a value outside its
choices or a dataset that does not exist is one error naming the key and what is allowed.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from edgekit_exporters.formats import FORMATS
from edgekit_runtime.errors import UserError

from .settings import (FINETUNE_TEACHER, NEW_TEACHER, NEW_TEACHER_SHAPE, REQUIRED, BundleSettings, DataSettings,
                       DistillSettings, ExportSettings, FinetuneSettings, Key, SignalSettings, SplitSettings,
                       TeacherSettings, from_recipe, recipe_keys)
from .sweep import SweepSettings
from .teacher.settings import MaskSettings, PretrainSettings
from .train_settings import FINETUNE, FINETUNE_RECIPE, RECIPE, TrainSettings


def _sections() -> dict[str, dict[str, Key]]:
    """Every section's keys, made from the settings classes the commands' options are made from."""
    return {
        # data.seed seeds every stage (the split, initialisation and batches), as --seed does
        # the signal steps apply from fine-tuning on (a pretraining stage sees the recordings as they are)
        "data": {**recipe_keys(DataSettings), **recipe_keys(SplitSettings), **recipe_keys(SignalSettings),
                 **recipe_keys(TrainSettings, only=("seed",))},
        # pretrained = "general" (the default): start from the teacher that ships with edgekit (size, patch and time
        # bias are then its own; attention, block and topk choose the backend any teacher runs); "none": a new one
        "teacher": recipe_keys(TeacherSettings, defaults=FINETUNE_TEACHER),
        # steps = 0: no self-supervised pretraining on this data (the general teacher, or a teacher from scratch,
        # is fine-tuned directly); steps > 0 with teacher.pretrained continues pretraining it on this data
        "pretrain": {"steps": Key(int, 0, minimum=0),
                     **recipe_keys(PretrainSettings, exclude=("steps", "seed", "use_mask_token", "use_uncertainty",
                                                              "mask")),
                     **recipe_keys(MaskSettings, prefix="mask_")},
        "finetune": {**recipe_keys(TrainSettings, only=FINETUNE_RECIPE, defaults=FINETUNE),
                     **recipe_keys(FinetuneSettings)},
        # params = "auto": the size the [sweep] recommends
        "student": {"params": Key(str, "10k"), "width": Key(int)},
        "distill": {**recipe_keys(DistillSettings), **recipe_keys(TrainSettings, only=RECIPE),
                    "unlabeled": Key((list, str), [])},
        "bundle": {"archive": Key(bool, False), **recipe_keys(BundleSettings)},
        "bench": {"windows": Key(int, 200, minimum=1), "threads": Key(int, 1, minimum=1), "quick": Key(bool, True)},
    }


# optional: without a [sweep] table the pipeline skips the sweep stage
SWEEP_KEYS = {"params": Key((list, str), ["1k", "3k", "10k", "30k"]), "fractions": Key((list, float), [1.0]),
              "seeds": Key(int, 2, minimum=1), "jobs": Key(int, 1, minimum=1),
              **recipe_keys(SweepSettings, only=("epochs", "target"))}
EXPORT_KEYS = recipe_keys(ExportSettings)
TOP_KEYS = {"name": Key(str)}


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return "a list of strings" if t[1] is str else "a list of numbers"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[t]


def _is(value, t) -> bool:
    if t is bool:
        return isinstance(value, bool)
    if t is float:  # TOML has nan and inf, which no setting means
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, t) and not isinstance(value, bool)


def _check(where: str, name: str, value, key: Key):
    t = key.type
    ok = (isinstance(value, list) and all(_is(v, t[1]) for v in value)) if isinstance(t, tuple) else _is(value, t)
    if not ok:
        raise UserError(f"{where}: {name} must be {_type_name(t)}, got {value!r}")
    if key.choices and value not in key.choices:
        raise UserError(f"{where}: {name} = {value!r} is not allowed; allowed: {', '.join(key.choices)}")
    if key.minimum is not None and value < key.minimum:
        raise UserError(f"{where}: {name} must be at least {key.minimum:g}, got {value}")
    if t == (list, float):
        return [float(v) for v in value]
    return float(value) if t is float else value


def _fill(where: str, prefix: str, given: dict, keys: dict[str, Key]) -> dict:
    unknown = sorted(set(given) - set(keys))
    if unknown:
        raise UserError(f"{where}: unknown key {prefix}{unknown[0]}; allowed: {', '.join(keys)}")
    out = {}
    for name, key in keys.items():
        if name in given:
            out[name] = _check(where, prefix + name, given[name], key)
        elif key.default is REQUIRED:
            raise UserError(f"{where}: {prefix}{name} is required")
        else:
            out[name] = list(key.default) if isinstance(key.default, list) else key.default
    return out


@dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    sections: dict  # section -> {key: value}, every key present (defaults filled in)
    exports: tuple  # ({"format", "precision", "calibration_size"}, ...)

    def __getitem__(self, section: str) -> dict:
        return self.sections[section]

    def data_spec(self) -> dict:
        return from_recipe(DataSettings, self["data"]).spec()

    def to_json(self) -> dict:
        return {"name": self.name, **self.sections, "export": list(self.exports)}


def _resolve_dataset(where: str, dataset: str, base: Path) -> str:
    from .data.bundled import BUNDLED, bundled_name

    if bundled_name(dataset) is not None:
        return bundled_name(dataset)
    path = Path(dataset) if Path(dataset).is_absolute() else base / dataset
    if not path.exists():
        raise UserError(f"{where}: data.dataset = {dataset!r} is neither a bundled dataset nor an existing file or "
                        f"directory; allowed: {', '.join(BUNDLED)} or a CSV/Parquet path (relative to the recipe)")
    return str(path)


def parse_recipe(text: str, path: Path) -> Recipe:
    where = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{where}: not valid TOML ({e})") from None
    sections = _sections()
    allowed = [*TOP_KEYS, *sections, "sweep", "export"]
    for k in raw:
        if k not in allowed:
            raise UserError(f"{where}: unknown key {k}; allowed: {', '.join(allowed)}")
        if k in (*sections, "sweep") and not isinstance(raw[k], dict):
            raise UserError(f"{where}: {k} must be a table ([{k}])")
    top = _fill(where, "", {k: raw[k] for k in TOP_KEYS if k in raw}, TOP_KEYS)
    if top["name"] is not None and (not top["name"].strip() or Path(top["name"]).name != top["name"]
                                    or top["name"] in (".", "..")):
        raise UserError(f"{where}: name = {top['name']!r} must be a plain name (the run directory is runs/NAME)")
    values = {s: _fill(where, f"{s}.", raw.get(s, {}), keys) for s, keys in sections.items()}
    values["sweep"] = _fill(where, "sweep.", raw["sweep"], SWEEP_KEYS) if "sweep" in raw else None
    exports = raw.get("export", [{}])
    if not isinstance(exports, list) or not exports or not all(isinstance(e, dict) for e in exports):
        raise UserError(f"{where}: export must be one or more [[export]] tables")
    exports = tuple(_fill(where, "export.", e, EXPORT_KEYS) for e in exports)

    seen = set()
    for e in exports:
        allowed = FORMATS[e["format"]].precisions
        if e["precision"] not in allowed:
            raise UserError(f"{where}: export.precision = {e['precision']!r} is not available for {e['format']}; "
                            f"allowed: {', '.join(allowed)}")
        if (e["format"], e["precision"]) in seen:
            raise UserError(f"{where}: export {e['format']} {e['precision']} is listed twice")
        seen.add((e["format"], e["precision"]))
    shaped = [f"teacher.{k}" for k in NEW_TEACHER_SHAPE if k in raw.get("teacher", {})]
    if shaped and values["teacher"]["pretrained"] != NEW_TEACHER:
        these = "these" if len(shaped) > 1 else "this"
        raise UserError(f"{where}: {', '.join(shaped)}: only a new teacher takes {these}, and teacher.pretrained = "
                        f"{values['teacher']['pretrained']!r} keeps its own (add pretrained = \"{NEW_TEACHER}\" for a "
                        "new teacher)")
    d = values["data"]
    d["dataset"] = _resolve_dataset(where, d["dataset"], path.parent)
    values["distill"]["unlabeled"] = [_resolve_dataset(where, u, path.parent) for u in values["distill"]["unlabeled"]]
    if values["student"]["params"] == "auto" and values["sweep"] is None:
        raise UserError(f"{where}: student.params = \"auto\" takes the size a sweep recommends; add a [sweep] table "
                        "or give a budget such as \"10k\"")
    sw = values["sweep"]
    if sw is not None:
        from .models.msa_cnn import parse_budget

        if not sw["params"] or not sw["fractions"]:
            raise UserError(f"{where}: sweep.params and sweep.fractions need at least one value")
        for b in sw["params"]:
            try:
                parse_budget(b)
            except UserError as e:
                raise UserError(f"{where}: sweep.params: {e}") from None
        if not all(0 < f <= 1 for f in sw["fractions"]):
            raise UserError(f"{where}: sweep.fractions must be in (0, 1]")
    if values["student"]["width"] is None and values["student"]["params"] != "auto":
        from .models.msa_cnn import parse_budget

        try:
            parse_budget(values["student"]["params"])
        except UserError as e:
            raise UserError(f"{where}: student.params: {e}") from None
    for section, cls, prefix in (("data", SplitSettings, ""), ("data", SignalSettings, ""),
                                 ("pretrain", MaskSettings, "mask_"), ("distill", DistillSettings, "")):
        try:
            from_recipe(cls, values[section], prefix=prefix)
        except UserError as e:
            raise UserError(f"{where}: {section}: {e}") from None
    return Recipe(path, top["name"] or path.stem, values, exports)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the recipe ({e.strerror if isinstance(e, OSError) else e})") from None
    return parse_recipe(text, path)


def data_fingerprint(spec: dict) -> str:
    """What identifies the data: a bundled name, or the content of the user's files (edits invalidate stages)."""
    from .data.bundled import bundled_name

    if bundled_name(spec["dataset"]) is not None:
        return spec["dataset"]
    path = Path(spec["dataset"])
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()
