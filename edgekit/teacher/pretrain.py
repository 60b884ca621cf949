"""Self-supervised pretraining: masked reconstruction with the uncertainty-weighted loss.

The training data is one or more sources (a dataset's windows, or the corpus of the general teacher), each seen
channel by channel. A step draws a source (weighted by the square root of its size, so small sources are not
drowned), a crop of at most `max_tokens` patches at a random offset, and as many windows as fill
`tokens_per_step` tokens. Every step draws its batch and masks from (seed, step) alone, so a run resumed from a
checkpoint takes exactly the steps an uninterrupted run would. Under torchrun the same code runs with
DistributedDataParallel (gloo on CPU, nccl on GPU): each rank takes its share of the step's batch, rank 0 writes
checkpoints.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, replace

import numpy as np
import torch
import torch.distributed as dist

from edgekit_runtime.errors import UserError

from ..training_loop import progress_bar
from .data import TeacherData
from .loss import masked_reconstruction_loss, masked_rmse, uncertainty_weights
from .masking import apply_random, make_masks
from .model import Teacher, patches
from .settings import PretrainSettings
from .store import TeacherCheckpoint, load_teacher, save_teacher


def _lr_lambda(s: PretrainSettings):
    def f(step):
        if step < s.warmup:
            return (step + 1) / s.warmup
        return 0.5 * (1 + math.cos(math.pi * (step - s.warmup) / max(1, s.steps - s.warmup)))
    return f


def masked_batch(model: Teacher, batch: TeacherData, s: PretrainSettings, gen: torch.Generator):
    """Tokens with masking applied, the MASK positions, the clean targets and the loss mask/weights."""
    tok = model.tokenize(batch.values, batch.times, batch.observed)
    loss_mask, mask_token, randomised = make_masks(tok.observed, s.mask, gen)
    values = apply_random(tok.values, tok.observed, randomised, gen)
    if not s.use_mask_token:  # ablation: the masked values are simply zeroed
        values = torch.where(mask_token[..., None], torch.zeros_like(values), values)
        mask_token = None
    weights = None
    if s.use_uncertainty and batch.sigma is not None:
        # in the instance-normalised units of the values
        sigma = patches(model.channel_samples(batch.sigma, fill=1.0), model.cfg.patch) / tok.scale[:, None, None]
        weights = uncertainty_weights(sigma, tok.observed)
    return tok._replace(values=values), mask_token, tok.values, loss_mask, weights


def reconstruction_rmse(model: Teacher, sources: list[TeacherData], s: PretrainSettings, seed: int = 1234,
                        clean: list[TeacherData] | None = None) -> float:
    """RMSE on masked positions of every window of `sources` (cropped to `max_tokens` patches) with a fixed
    masking draw, so it is comparable across steps and runs. `clean`: the same windows before noise was added,
    to compare with instead of the inputs."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    crop = s.max_tokens * model.cfg.patch
    preds, targets, masks = [], [], []
    with torch.no_grad():
        for k, data in enumerate(sources):
            data = data.crop(0, crop)
            for i in range(0, len(data), 256):
                batch = data.take(slice(i, i + 256))
                inputs, mask_token, target, loss_mask, _ = masked_batch(model, batch, s, gen)
                if clean is not None:
                    tok = model.tokenize(batch.values, batch.times, batch.observed)
                    target = model.normalised_like(tok, clean[k].crop(0, crop).values[i : i + 256])
                preds.append(model(inputs, mask_token)[0].flatten(0, 1))
                targets.append(target.flatten(0, 1))
                masks.append(loss_mask.flatten())
    return masked_rmse(torch.cat(preds), torch.cat(targets), torch.cat(masks))


def draw_batch(sources: list[TeacherData], s: PretrainSettings, patch: int, rng: np.random.Generator) -> TeacherData:
    """The step's batch: a source, a crop and windows, as the module docstring says."""
    sizes = np.array([len(d) for d in sources], float)
    data = sources[rng.choice(len(sources), p=np.sqrt(sizes) / np.sqrt(sizes).sum())]
    length = data.values.shape[-1]
    crop = min(length, s.max_tokens * patch)
    start = int(rng.integers(0, length - crop + 1)) // patch * patch
    n = min(len(data), max(1, s.tokens_per_step // -(-crop // patch)))
    idx = np.sort(rng.choice(len(data), size=n, replace=False))
    return data.take(torch.from_numpy(idx)).crop(start, crop)


def _world() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _max_diff_across_ranks(model: torch.nn.Module) -> float:
    """Largest |w_rank - w_rank0| over all weights and ranks (0.0 when replicas are identical)."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    ref = flat.clone()
    dist.broadcast(ref, 0)
    diff = (flat - ref).abs().max()
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)


def pretrain(ckpt: TeacherCheckpoint, train: list[TeacherData], val: list[TeacherData], s: PretrainSettings,
             out: str, progress: bool = True) -> dict:
    """Pretrain `ckpt.model` in place on the univariate windows of the `train` sources, checkpointing to `out`;
    resumes from `ckpt.trainer` when present."""
    rank, world = _world()
    model = ckpt.model
    model.cfg = replace(model.cfg, context=s.max_tokens)  # it sees no longer windows at once after this run either
    train = [d.univariate() for d in train]
    val = [d.univariate() for d in val if len(d)]
    if any(len(d) < world for d in train):
        raise UserError(f"a pretraining source has fewer windows than the number of processes {world}")
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(s))
    start = int(ckpt.state.get("step", 0))
    history = list(ckpt.state.get("history", []))
    if ckpt.trainer is not None:
        opt.load_state_dict(ckpt.trainer["optimizer"])
        sched.load_state_dict(ckpt.trainer["scheduler"])
    net = model
    if world > 1:  # without the mask token (ablation) its parameter gets no gradient
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=not s.use_mask_token)

    def save(step):
        if rank == 0:
            ckpt.state = {**ckpt.state, "step": step, "history": history, "settings": asdict(s)}
            ckpt.trainer = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
            save_teacher(out, ckpt)

    elapsed, began = float(history[-1]["seconds"]) if history else 0.0, time.perf_counter()
    bar = progress_bar(range(start, s.steps), desc="pretrain", unit="step", initial=start, total=s.steps,
                       disable=not progress or rank != 0, leave=False)
    for step in bar:
        model.train()
        batch = draw_batch(train, s, model.cfg.patch, np.random.default_rng([s.seed, step]))
        batch = batch.take(slice(rank, None, world))
        gen = torch.Generator().manual_seed(s.seed * 1_000_003 + step)
        torch.manual_seed(s.seed * 1_000_003 + step * 7919 + rank)  # dropout
        inputs, mask_token, target, loss_mask, weights = masked_batch(model, batch, s, gen)
        recon, _, _ = net(inputs, mask_token)
        loss = masked_reconstruction_loss(recon, target, loss_mask, weights)
        if not torch.isfinite(loss):
            raise UserError(f"pretraining loss became non-finite at step {step}; lower --lr or check the data")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        done = step + 1
        if rank == 0 and (done % s.eval_every == 0 or done == s.steps):
            rmse = reconstruction_rmse(model, val, s) if val else float("nan")
            history.append({"step": done, "loss": round(loss.item(), 6), "val_rmse": round(rmse, 6),
                            "seconds": round(elapsed + time.perf_counter() - began, 1)})
            bar.set_postfix(loss=f"{loss.item():.4f}", val_rmse=f"{rmse:.4f}", refresh=False)
        if done % s.checkpoint_every == 0 or done == s.steps:
            save(done)
    bar.close()
    summary = {"steps": s.steps, "history": history,
               "final_val_rmse": history[-1]["val_rmse"] if history else None}
    if world > 1:
        summary["ddp"] = {"world_size": world, "max_weight_diff_across_ranks": _max_diff_across_ranks(model)}
        if rank == 0:
            ckpt.state = {**ckpt.state, "ddp": summary["ddp"]}
            save_teacher(out, ckpt)
        dist.barrier()
    return summary


def resume_checkpoint(out: str) -> TeacherCheckpoint:
    ckpt = load_teacher(out)
    if ckpt.trainer is None:
        raise UserError(f"{out}: no trainer state to resume from")
    return ckpt
