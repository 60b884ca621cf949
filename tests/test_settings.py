"""Each default is written once: the commands' options and the recipes' keys are made from the same settings
classes, and a recipe can set every setting its stage's command can."""

import json

import pytest

from edgekit import api
from edgekit.bundle import bundle_command
from edgekit.cli import distill, export
from edgekit.recipe import EXPORT_KEYS, _sections
from edgekit.settings import DataSettings, DistillSettings, ExportSettings, SplitSettings, from_options
from edgekit.teacher.cli import finetune, pretrain
from edgekit.train_settings import TrainSettings

# options that say where things go or how to show them, not how a stage works
NOT_SETTINGS = {"out", "json_out", "quiet", "overwrite", "resume", "dataset", "teacher", "checkpoint", "model_dirs",
                "sign_key", "help"}

SECTIONS = _sections()
CASES = [  # command, the recipe keys of its stage, options a recipe sets another way
    (pretrain, {**SECTIONS["data"], **SECTIONS["teacher"], **SECTIONS["pretrain"]}, set()),
    (finetune, {**SECTIONS["data"], **SECTIONS["teacher"], **SECTIONS["finetune"]}, set()),
    # the pipeline distils on the teacher's data and labels: finetune.labels_per_class, data.window
    (distill, {**SECTIONS["distill"], **SECTIONS["student"], **SECTIONS["data"]}, {"window", "labels_per_class"}),
    (export, EXPORT_KEYS, set()),
    (bundle_command, SECTIONS["bundle"], set()),
]


@pytest.mark.parametrize("command, keys, elsewhere", CASES, ids=lambda c: getattr(c, "name", None))
def test_a_recipe_sets_every_setting_of_its_stage_with_the_commands_default(command, keys, elsewhere):
    values = command.make_context(command.name, [], resilient_parsing=True).params  # the defaults, as parsed
    options = {k: v for k, v in values.items() if k not in NOT_SETTINGS}
    missing = set(options) - set(keys) - elsewhere
    assert not missing, f"{command.name}: options a recipe cannot set: {sorted(missing)}"
    shared = set(options) & set(keys) - elsewhere
    if command is pretrain:  # a recipe skips pretraining by default (steps = 0) and fine-tunes the general teacher;
        shared -= {"steps", "size", "pretrained"}  # pretraining alone builds a new large one (cli.PRETRAIN_TEACHER)
    assert shared

    def plain(v):
        return list(v) if isinstance(v, tuple) else v

    for name in shared:
        assert keys[name].default == plain(options[name]), (command.name, name)


def test_the_recipe_sections_and_the_commands_share_the_training_defaults():
    # the student's recipe and the teacher's fine-tuning differ on purpose, each written once
    opts = {p.name: p.default for p in finetune.params if p.name in ("steps", "lr")}
    assert (opts["steps"], opts["lr"]) == (SECTIONS["finetune"]["steps"].default, SECTIONS["finetune"]["lr"].default)
    assert SECTIONS["distill"]["steps"].default == TrainSettings().steps != opts["steps"]


def test_options_parse_as_a_user_types_them():
    params = finetune.make_context("finetune", ["GunPoint", "--freeze-encoder", "--no-augment", "--test-groups",
                                                "a, b", "--split", "group"]).params
    assert (params["freeze_encoder"], params["augment"], params["test_groups"], params["split"]) == \
        (True, False, ("a", "b"), "group")


def test_settings_from_options_keep_what_the_command_has_no_option_for():
    kwargs = {"split": "group", "test_groups": ("test",), "val": 0.1, "test": 0.3, "other": 1}
    assert from_options(SplitSettings, kwargs) == SplitSettings("group", ("test",), 0.1, 0.3)
    assert kwargs == {"other": 1}
    with pytest.raises(Exception, match="val and test"):
        SplitSettings(val=0.6, test=0.5)
    with pytest.raises(Exception, match="supports precision"):
        ExportSettings("onnx", "fp16")
    with pytest.raises(Exception, match="temperature must be positive"):
        DistillSettings(temperature=0.0)


def test_the_python_api_runs_a_stage_as_its_command_does(tmp_path):
    from click.testing import CliRunner

    from edgekit_runtime.cli import main

    summary = api.train(DataSettings("BasicMotions"), str(tmp_path / "a"), settings=TrainSettings(steps=3),
                        progress=False)
    r = CliRunner().invoke(main, ["train", "BasicMotions", "--steps", "3", "--quiet", "--out", str(tmp_path / "b"),
                                  "--json", str(tmp_path / "b.json")])
    assert r.exit_code == 0, r.output
    by_cli = json.loads((tmp_path / "b.json").read_text())
    assert summary["metrics"]["test_accuracy"] == by_cli["metrics"]["test_accuracy"]
    assert summary["parameters"] == by_cli["parameters"]
    manifest = api.export(str(tmp_path / "a"), str(tmp_path / "m"))
    assert manifest["model"]["format"] == "onnx" and manifest["verification"]["argmax_agreement"] == 1.0
