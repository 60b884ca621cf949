"""The commands as Python functions, for notebooks and scripts.

Each function takes the settings classes its command's options are made from (edgekit.settings), with the same
defaults, and returns the summary the command's --json writes:

    from edgekit import api
    from edgekit.settings import DataSettings, ExportSettings

    teacher = api.finetune("GunPoint", "runs/gp/teacher")  # from the general teacher that ships with edgekit
    student = api.distill("runs/gp/teacher", "runs/gp/student")
    api.export("runs/gp/student", "runs/gp/model-int8", ExportSettings(precision="int8"))
    api.bundle(["runs/gp/model-int8"], "runs/gp/bundle", checkpoint="runs/gp/student")

DATA is a bundled dataset's name, a CSV/Parquet path, or DataSettings for files that need a window length, label
column and so on. Torch is imported when a function runs, not by importing this module.
"""

from __future__ import annotations

from pathlib import Path

from .settings import (FINETUNE_TEACHER, BundleSettings, DataSettings, DistillSettings, ExportSettings,
                       FinetuneSettings, SignalSettings, SplitSettings, TeacherSettings)
from .teacher.settings import PretrainSettings
from .train_settings import FINETUNE, TrainSettings


def _spec(data: str | DataSettings) -> dict:
    return (data if isinstance(data, DataSettings) else DataSettings(str(data))).spec()


def train(data: str | DataSettings, out: str, split: SplitSettings = SplitSettings(),
          settings: TrainSettings = TrainSettings(), params: str = "10k", signal: SignalSettings = SignalSettings(),
          overwrite: bool = False, progress: bool = True) -> dict:
    """`edgekit train`: an MSA-CNN student trained on the labels, saved as a checkpoint at `out`."""
    from .train import train_student

    return train_student(_spec(data), out, split, params=params, signal=signal, settings=settings,
                         overwrite=overwrite, progress=progress)


def pretrain(data: str | DataSettings, out: str, teacher: TeacherSettings = TeacherSettings(size="large"),
             settings: PretrainSettings = PretrainSettings(), split: SplitSettings = SplitSettings(),
             resume: bool = False, progress: bool = True) -> dict:
    """`edgekit pretrain`: masked-reconstruction pretraining of a teacher on the data's training windows."""
    from .teacher.run import start_or_resume

    return start_or_resume(_spec(data), out, teacher, settings, split, resume=resume, progress=progress)


def finetune(data: str | DataSettings, out: str, teacher: TeacherSettings = FINETUNE_TEACHER,
             finetuning: FinetuneSettings = FinetuneSettings(), split: SplitSettings = SplitSettings(),
             settings: TrainSettings = FINETUNE, signal: SignalSettings = SignalSettings(),
             progress: bool = True) -> dict:
    """`edgekit finetune`: a teacher (by default the general one that ships with edgekit) fine-tuned on labels."""
    from .teacher.finetune import finetune as run

    return run(_spec(data), out, teacher, finetuning, split, settings, signal, progress=progress)


def distill(teacher: str, out: str, settings: DistillSettings = DistillSettings(),
            train_settings: TrainSettings = TrainSettings(), params: str = "10k", overwrite: bool = False,
            progress: bool = True) -> dict:
    """`edgekit distill`: the teacher distilled into a student; keeps the better of it and the student trained
    alone (on validation) and reports both."""
    from .distill import distill as run

    return run(teacher, out, params=params, settings=settings, train_settings=train_settings, overwrite=overwrite,
               progress=progress)


def export(checkpoint: str, out: str, settings: ExportSettings = ExportSettings(), overwrite: bool = False,
           progress: bool = True) -> dict:
    """`edgekit export`: a verified model directory; int8 falls back to quantisation-aware training when
    post-training quantisation is refused. Returns the manifest."""
    from .quantize import export_verified

    return export_verified(checkpoint, out, settings, overwrite, progress)


def bundle(model_dirs: list[str], out: str, checkpoint: str | None = None,
           settings: BundleSettings = BundleSettings(), overwrite: bool = False) -> dict:
    """`edgekit bundle`: exported model directories packed for the board. Returns the manifest."""
    from .bundle import build_bundle

    return build_bundle([str(d) for d in model_dirs], out, checkpoint, settings, overwrite=overwrite)


def pipeline(recipe: str | Path, out: str | None = None, progress: bool = True) -> dict:
    """`edgekit pipeline`: everything a recipe asks for; returns each stage's record."""
    from .pipeline import run_pipeline
    from .recipe import load_recipe

    r = load_recipe(recipe)
    return run_pipeline(r, out or f"runs/{r.name}", progress=progress, echo=lambda line: None)
