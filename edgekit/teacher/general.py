"""The general teacher that ships with edgekit: the `large` encoder pretrained on the corpus of corpus.py.

`build_general` rebuilds it (`make teacher`): 5% of every source's windows are held out for the validation RMSE,
the run checkpoints and resumes like any pretraining run, and the finished encoder is written in fp16 with the
corpus manifest and the pretraining log beside it. `edgekit finetune DATA` starts from it by default.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from edgekit_runtime.errors import UserError

from .corpus import SOURCES, load_corpus, manifest
from .data import prepare
from .model import Teacher, TeacherConfig
from .pretrain import pretrain
from .settings import PretrainSettings
from .store import TeacherCheckpoint, load_teacher, save_teacher

GENERAL = "general"
SHIPPED = Path(__file__).parent / "general"
SETTINGS = PretrainSettings(steps=3000, tokens_per_step=4096, max_tokens=64, lr=1e-3, warmup=100, eval_every=100,
                            checkpoint_every=250)
VAL_SHARE = 0.05


def resolve(pretrained: str) -> str:
    """A pretrained teacher's directory: "general" names the shipped one."""
    if pretrained == GENERAL:
        if not (SHIPPED / "teacher.json").is_file():
            raise UserError(f"the general teacher is not built in {SHIPPED}; run `make teacher`")
        return str(SHIPPED)
    return pretrained


def corpus_data(patch: int, seed: int = 0):
    """(train sources, val sources, manifest) of the corpus, each source normalised as `edgekit train` would."""
    from ..normalization import fit_preprocessing

    sets = load_corpus()
    train, val = [], []
    rng = np.random.default_rng(seed)
    for ds in sets:
        data = prepare(ds, fit_preprocessing(ds, "auto", ds.length), patch)
        order = rng.permutation(len(data))
        n_val = max(1, int(round(VAL_SHARE * len(data))))
        val.append(data.take(torch.from_numpy(np.sort(order[:n_val]))))
        train.append(data.take(torch.from_numpy(np.sort(order[n_val:]))))
    return train, val, manifest(sets)


def build_general(run_dir: str, out: str = str(SHIPPED), settings: PretrainSettings = SETTINGS,
                  progress: bool = True) -> dict:
    """Pretrain the general teacher in `run_dir` (resuming a killed run), then write the shipped form to `out`."""
    cfg = TeacherConfig.of_size("large")
    train, val, sources = corpus_data(cfg.patch, settings.seed)
    if (Path(run_dir) / "trainer.pt").is_file():
        ckpt = load_teacher(run_dir)
        if ckpt.state.get("corpus") != sources or ckpt.state.get("settings") != asdict(settings):
            raise UserError(f"{run_dir}: holds a run on another corpus or with other settings; remove it first")
    else:
        torch.manual_seed(settings.seed)
        ckpt = TeacherCheckpoint(Teacher(cfg), None, {"corpus": GENERAL}, state={"size": "large", "corpus": sources})
    summary = pretrain(ckpt, train, val, settings, run_dir, progress=progress)
    state = {"size": "large", "corpus": sources, "settings": asdict(settings), "history": summary["history"],
             "final_val_rmse": summary["final_val_rmse"],
             "windows": {"train": sum(len(d) for d in train), "val": sum(len(d) for d in val)},
             "sources": [s.name for s in SOURCES]}
    save_teacher(out, TeacherCheckpoint(ckpt.model, None, {"corpus": GENERAL}, state=state), half=True)
    return {**state, "parameters": ckpt.model.parameter_count(), "out": out}
