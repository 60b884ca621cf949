"""Each stage's settings, written once.

A stage's settings are a frozen dataclass whose fields carry their default, help text and choices. The Python
functions take the dataclass, the commands' click options are made from it (`options`, `from_options`) and so are
the keys of a recipe's section (`recipe_keys`), so no default is written twice. Torch-free: `edgekit --help`
builds its options from here.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field

import click

from edgekit_exporters.formats import ALL_PRECISIONS, FORMATS
from edgekit_runtime.errors import UserError

REQUIRED = object()  # a recipe key without a default


def setting(default, help: str = "", *, choices: tuple = (), minimum: float | None = None,
            aliases: tuple[str, ...] = (), argument: bool = False):
    """A settings field: its option is --field-name (and `aliases`); `argument` makes it the command's positional
    argument (and a required recipe key)."""
    return field(default=default, metadata={"help": help, "choices": choices, "min": minimum, "aliases": aliases,
                                            "argument": argument})


def _base_type(hint) -> tuple[type, type | None]:
    """(int | float | str | bool | tuple, the item type of a tuple) of a field's annotation (None allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return tuple, typing.get_args(hint)[0]
    return hint, None


def _fields(cls, only, exclude):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = (set(only or ()) | set(exclude)) - names
    if unknown:
        raise ValueError(f"{cls.__name__} has no setting {sorted(unknown)[0]}")
    hints = typing.get_type_hints(cls)
    return [(f, *_base_type(hints[f.name])) for f in dataclasses.fields(cls)
            if (only is None or f.name in only) and f.name not in exclude]


def _csv_tuple(ctx, param, value):
    """A comma-separated option as a tuple (None when absent); naming nothing, or a name twice, is refused."""
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise UserError(f"{param.opts[0]} {value!r} names nothing; give comma-separated names")
    twice = sorted({v for v in items if items.count(v) > 1})
    if twice:
        raise UserError(f"{param.opts[0]} names {', '.join(map(repr, twice))} more than once")
    return items


def _option(f: dataclasses.Field, base: type, default, prefix: str):
    m = f.metadata
    key = prefix + f.name
    if m.get("argument"):
        return click.argument(key)
    name = key.replace("_", "-")
    flags = (f"--{name}", *m.get("aliases", ()))
    help = m.get("help", "")
    if base is bool:
        if default is False:
            return click.option(*flags, key, is_flag=True, help=help)
        return click.option(f"--{name}/--no-{name}", key, default=default, show_default=True, help=help)
    if base is tuple:
        return click.option(*flags, key, callback=_csv_tuple, metavar="A,B,...", help=help)
    kind = click.Choice(m["choices"]) if m.get("choices") else base
    if base in (int, float) and m.get("min") is not None:
        kind = (click.IntRange if base is int else click.FloatRange)(min=m["min"])
    return click.option(*flags, key, type=kind, default=default, show_default=default is not None, help=help)


def options(cls, *, only: tuple[str, ...] | None = None, exclude: tuple[str, ...] = (), defaults=None,
            prefix: str = ""):
    """A decorator adding one click option per setting of `cls` (`defaults`: an instance whose values are shown
    and used instead of the class defaults); the command gets them as keyword arguments named prefix + field."""
    d = defaults if defaults is not None else cls()

    def decorate(command):
        for f, base, _ in reversed(_fields(cls, only, exclude)):
            command = _option(f, base, getattr(d, f.name), prefix)(command)
        return command

    return decorate


def from_options(cls, kwargs: dict, defaults=None, prefix: str = "", **fixed):
    """Pop `cls`'s settings out of a command's keyword arguments (a setting the command has no option for keeps
    the value of `defaults`)."""
    picked = {f.name: kwargs.pop(prefix + f.name) for f in dataclasses.fields(cls) if prefix + f.name in kwargs}
    base = defaults if defaults is not None else cls()
    return dataclasses.replace(base, **picked, **fixed)


@dataclass(frozen=True)
class Key:
    """A recipe key: its type (int, float, str, bool, (list, str) or (list, float)), default and choices."""
    type: type | tuple
    default: object = None
    choices: tuple = ()
    minimum: float | None = None


def recipe_keys(cls, *, only: tuple[str, ...] | None = None, exclude: tuple[str, ...] = (), defaults=None,
                prefix: str = "") -> dict:
    """The recipe keys (prefix + field) of `cls`'s settings, with the same defaults and choices as the options."""
    d = defaults if defaults is not None else cls()
    keys = {}
    for f, base, item in _fields(cls, only, exclude):
        default = REQUIRED if f.metadata.get("argument") else getattr(d, f.name)
        if base is tuple:
            keys[prefix + f.name] = Key((list, item), None if default is None else list(default))
        else:
            keys[prefix + f.name] = Key(base, default, f.metadata.get("choices", ()), f.metadata.get("min"))
    return keys


def from_recipe(cls, section: dict, defaults=None, prefix: str = "", **fixed):
    """`cls` from a recipe section (lists become tuples); keys of other settings in the section are ignored."""
    picked = {f.name: section[prefix + f.name] for f in dataclasses.fields(cls) if prefix + f.name in section}
    picked = {k: tuple(v) if isinstance(v, list) else v for k, v in picked.items()}
    return dataclasses.replace(defaults if defaults is not None else cls(), **picked, **fixed)


# --- the stages ---

@dataclass(frozen=True)
class DataSettings:
    """Which data to load: a bundled dataset or the user's recordings (CSV/Parquet files)."""
    dataset: str = setting(None, argument=True)
    window: int | None = setting(None, "Samples per window (recordings: Daphnet and your own files).", minimum=1)
    stride: int | None = setting(None, "Samples between window starts (default: the window length; Daphnet: 128).",
                                 minimum=1)
    time_column: str | None = setting(None, "Time column of your files: seconds or ISO-8601 [default: time].")
    label_column: str | None = setting(None, "Label column of your files (a window takes its majority label).")
    channels: tuple[str, ...] | None = setting(None, "Channel columns of your files [default: all others].")
    uncertainty_suffix: str | None = setting(None, "Per-channel uncertainty columns are CHANNEL+SUFFIX (e.g. _sigma).")

    def spec(self) -> dict:
        """The data spec the data layer loads from (and checkpoints record)."""
        return {"dataset": self.dataset, "window": self.window, "stride": self.stride,
                "time_column": self.time_column, "label_column": self.label_column,
                "channels": None if self.channels is None else list(self.channels),
                "uncertainty_suffix": self.uncertainty_suffix}


@dataclass(frozen=True)
class SignalSettings:
    """Signal-level steps before windowing (edgekit.filters), stored in the model's preprocessing and run the same
    way on the board."""
    highpass: float | None = setting(None, "High-pass the signal at this many Hz before windowing.")
    bandpass: str | None = setting(None, "Band-pass the signal: LOW,HIGH in Hz.")
    filter_order: int = setting(4, "Butterworth order of --highpass/--bandpass.", minimum=1)
    detrend: str = setting("none", "Remove each window's mean or linear trend per channel.",
                           choices=("none", "constant", "linear"))
    max_gap: float | None = setting(None, "On the board, resample irregular timestamps to the nominal rate, "
                                          "splitting the stream at gaps longer than this (seconds).")

    def __post_init__(self):
        """The forms, before any data is read (the cutoffs against the sampling rate: filters.design_filter)."""
        if self.bandpass is not None:
            try:
                low, high = (float(v) for v in self.bandpass.split(","))
            except ValueError:
                raise UserError(f"--bandpass takes LOW,HIGH in Hz, got {self.bandpass!r}") from None
            if not (math.isfinite(high) and 0 < low < high):
                raise UserError(f"--bandpass {self.bandpass}: the cutoffs must be increasing positive numbers")
        if self.highpass is not None and not (math.isfinite(self.highpass) and self.highpass > 0):
            raise UserError(f"--highpass must be a positive number of Hz, got {self.highpass}")
        if self.max_gap is not None and not (math.isfinite(self.max_gap) and self.max_gap > 0):
            raise UserError(f"--max-gap must be a positive number of seconds, got {self.max_gap}")


@dataclass(frozen=True)
class SplitSettings:
    """How labelled data is split into training, validation and test windows (the random parts follow the
    stage's seed: TrainSettings.seed, PretrainSettings.seed)."""
    split: str | None = setting(None, "random: stratified by class; group: hold out whole groups. Default: the "
                                      "benchmark's own train/test split for bundled sets that have one, else random.",
                                choices=("random", "group"))
    test_groups: tuple[str, ...] | None = setting(None, "Groups to test on with --split group.")
    val: float = setting(0.2, "Validation fraction, held out to measure training (train and distill then refit on "
                              "training + validation windows).")
    test: float = setting(0.2, "Test fraction (random split).")

    def __post_init__(self):
        if not (0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1):
            raise UserError(f"val and test must be in [0, 1) with val + test < 1 (got {self.val}, {self.test})")


TEACHER_SIZES = ("tiny", "small", "base", "large")
NEW_TEACHER = "none"  # --pretrained none: a new teacher of --size
NEW_TEACHER_SHAPE = ("size", "patch", "time_bias")  # what only a new teacher takes; a pretrained one keeps its own


@dataclass(frozen=True)
class TeacherSettings:
    """Which teacher to start from, or the shape of a new one."""
    pretrained: str | None = setting(None, "The teacher to start from: \"general\" (shipped with edgekit, "
                                           "pretrained on a corpus of real recordings), a pretraining run "
                                           "directory, or \"none\" for a new teacher of --size.",
                                     aliases=("--from",))
    size: str = setting("small", "A new teacher's size: tiny 18k, small 100k, base 540k, large 1.2M parameters "
                                 "(any channel count).", choices=TEACHER_SIZES)
    attention: str = setting("dense", "dense: exact, O(N²) memory; sparse: block top-k, O(N·k·B); scan: exact, "
                                      "linear memory (any teacher: the backends share weights).",
                             choices=("dense", "sparse", "scan"))
    patch: int = setting(8, "Samples per token of a new teacher.", minimum=1)
    block: int = setting(64, "Key block size of sparse attention.", minimum=1)
    topk: int = setting(4, "Blocks each query block attends to besides its own (sparse attention).", minimum=1)
    time_bias: bool = setting(True, "The learned relative-time attention bias.")

    def __post_init__(self):
        if self.pretrained == NEW_TEACHER:  # how a command line or a recipe (TOML has no null) asks for a new one
            object.__setattr__(self, "pretrained", None)

    def backend(self) -> dict:
        """The attention backend's options, which every teacher takes (pretrained ones keep their weights)."""
        return {k: getattr(self, k) for k in ("attention", "block", "topk")}

    def model_options(self) -> dict:
        return {**self.backend(), **{k: getattr(self, k) for k in ("size", "patch", "time_bias")}}


# Where fine-tuning starts unless told otherwise (`edgekit finetune`, recipes, edgekit.api): the general teacher, so
# that no one needs a pretraining run of their own, and no teacher smaller than its student is fine-tuned by default.
FINETUNE_TEACHER = TeacherSettings(pretrained="general")


@dataclass(frozen=True)
class FinetuneSettings:
    """What of the labels the teacher's fine-tuning uses and trains (its recipe is train_settings.FINETUNE)."""
    labels_per_class: int | None = setting(None, "Use at most this many labelled training windows per class.",
                                           minimum=1)
    freeze_encoder: bool = setting(False, "Train only the classification head.")


@dataclass(frozen=True)
class DistillSettings:
    """The distillation loss (edgekit.distill)."""
    ce_weight: float = setting(1.0, "Weight of cross-entropy on labels.", minimum=0)
    kd_weight: float = setting(1.0, "Weight of T²·KL to the teacher's soft labels.", minimum=0)
    feature_weight: float = setting(0.5, "Weight of matching the teacher's embedding.", minimum=0)
    temperature: float = setting(4.0, "Softmax temperature T of the KL term.", minimum=0)
    minirocket: bool = setting(True, "Mix MiniRocket's class probabilities (random convolutions, ridge classifier) "
                                     "into the teacher's soft labels, with the weight (0 to 0.5) that lowers the "
                                     "log-loss on the validation windows by more than its standard error.")

    def __post_init__(self):
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise UserError(f"the distillation temperature must be positive, got {self.temperature}")
        weights = (self.ce_weight, self.kd_weight, self.feature_weight)
        if not all(math.isfinite(w) for w in weights) or self.ce_weight + self.kd_weight == 0:
            raise UserError(f"the loss weights must be finite, and the cross-entropy or the KD weight above 0 (got "
                            f"ce {self.ce_weight}, kd {self.kd_weight}, feature {self.feature_weight}): with neither, "
                            "nothing teaches the classifier")


@dataclass(frozen=True)
class ExportSettings:
    """Format, precision and the verification an export must pass (edgekit.export, edgekit.quantize)."""
    format: str = setting("onnx", "Model file format.", choices=tuple(FORMATS))
    precision: str = setting("fp32", "int8: static post-training quantisation calibrated on training windows "
                                     "(quantisation-aware training when that is refused); fp16: TFLite only.",
                             choices=ALL_PRECISIONS)
    atol: float | None = setting(None, "Largest allowed |torch - exported| on logits [default: fp32 1e-4, "
                                       "fp16 0.02, int8 not checked].")
    min_agreement: float | None = setting(None, "Smallest allowed share of windows with torch's argmax "
                                                "[default: fp32 1.0, fp16 0.99, int8 0.95].")
    max_accuracy_drop: float | None = setting(None, "Largest allowed test-accuracy loss against torch, 0..1 "
                                                    "[default: fp16 0.01; int8 0.02, or two held-out windows "
                                                    "where that is more (under 100 windows)].")
    calibration_size: int = setting(256, "int8: training windows used to fit activation ranges.", minimum=1)
    quant_format: str = setting("qoperator", "ONNX int8 graph form: QLinear* operators, or Quantize/Dequantize "
                                             "pairs around float ops.", choices=("qoperator", "qdq"))
    int8_io: bool = setting(False, "TFLite int8: int8 input and output tensors (full integer) instead of float32 "
                                   "ones quantised inside the model.")

    def __post_init__(self):
        from edgekit_exporters.formats import check_choice

        check_choice(self.format, self.precision)
        bounds = {"atol": (self.atol, math.inf), "min_agreement": (self.min_agreement, 1),
                  "max_accuracy_drop": (self.max_accuracy_drop, 1)}
        for name, (value, top) in bounds.items():
            if value is not None and not (math.isfinite(value) and 0 <= value <= top):  # NaN: a check never failing
                limit = "a share from 0 to 1" if top == 1 else "a finite number from 0"
                raise UserError(f"--{name.replace('_', '-')} must be {limit}, got {value}")

    def tolerances(self) -> dict:
        return {"max_abs_diff": self.atol, "min_agreement": self.min_agreement,
                "max_accuracy_drop": self.max_accuracy_drop}


@dataclass(frozen=True)
class BundleSettings:
    """What a bundle carries besides its models (edgekit.bundle)."""
    eval_windows: int = setting(200, "Most evaluation windows (from the test split) to embed.", minimum=1)
