"""The teacher: attention backends, masking, loss, pretraining with resume, DDP, fine-tuning, bad input."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from edgekit.data import WindowSet, load_dataset, split_dataset
from edgekit.teacher.attention import TimeBias, dense_attention, scan_attention, sparse_attention
from edgekit.teacher.data import prepare, time_scales
from edgekit.teacher.loss import masked_reconstruction_loss, uncertainty_weights
from edgekit.teacher.masking import MaskSettings, make_masks
from edgekit.teacher.model import Teacher, TeacherConfig
from edgekit.teacher.pretrain import PretrainSettings, pretrain
from edgekit.teacher.store import TeacherCheckpoint, load_teacher
from edgekit.train import fit_preprocessing
from edgekit_runtime.errors import UserError

from conftest import EDGEKIT


def qkv(n=300, b=2, h=3, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, d, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.cumsum(torch.rand(b, n, generator=g, dtype=torch.float64), 1)  # irregular timestamps
    pad = torch.zeros(b, n, dtype=torch.bool)
    pad[0, 250:] = True
    pad[1, ::7] = True
    return q, k, v, t, pad


def close(a, b, atol):
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=atol)


def random_bias(h=3):
    bias = TimeBias(h, 4, 0.1, 100.0).double()
    with torch.no_grad():
        bias.a.normal_(generator=torch.Generator().manual_seed(1))
    return bias


@pytest.mark.parametrize("with_bias", [False, True])
def test_scan_equals_dense(with_bias):
    q, k, v, t, pad = qkv()
    bias = random_bias() if with_bias else None
    ref = dense_attention(q, k, v, t, pad, bias)
    close(scan_attention(q, k, v, t, pad, bias, 64, 50), ref, 1e-10)


def test_scan_gradients_equal_dense_gradients():
    q, k, v, t, pad = qkv(n=130)
    bias = random_bias()
    grads = []
    for fn in (lambda *a: dense_attention(*a), lambda *a: scan_attention(*a, 32, 40)):
        leaves = [x.clone().requires_grad_() for x in (q, k, v)]
        bias.zero_grad()
        fn(*leaves, t, pad, bias).pow(2).sum().backward()
        grads.append([x.grad for x in leaves] + [bias.a.grad.clone(), bias.log_b.grad.clone()])
    for a, b in zip(*grads):
        close(a, b, 1e-9)


@pytest.mark.parametrize("with_bias", [False, True])
def test_sparse_with_all_blocks_equals_dense_and_with_few_blocks_does_not(with_bias):
    q, k, v, t, pad = qkv()
    bias = random_bias() if with_bias else None
    ref = dense_attention(q, k, v, t, pad, bias)
    close(sparse_attention(q, k, v, t, pad, bias, block=32, topk=9), ref, 1e-10)
    few = sparse_attention(q, k, v, t, pad, bias, block=32, topk=2)
    assert (few - ref).abs().max() > 1e-3


def test_time_bias_makes_attention_depend_on_real_time_gaps():
    q, k, v, t, pad = qkv(n=64)
    bias = random_bias()
    stretched = t.clone()
    stretched[:, 32:] += 50.0  # a gap in the middle of the window
    assert (dense_attention(q, k, v, t, pad, bias) - dense_attention(q, k, v, stretched, pad, bias)).abs().max() > 1e-3
    # a shift of all timestamps changes nothing: the bias depends on differences only
    close(dense_attention(q, k, v, t + 1000.0, pad, bias), dense_attention(q, k, v, t, pad, bias), 1e-8)


def test_masking_shares_and_spans():
    gen = torch.Generator().manual_seed(0)
    observed = torch.rand(64, 500, generator=gen) > 0.3
    s = MaskSettings(prob=0.5, random=0.2, keep=0.2)
    loss, token, rand = make_masks(observed, s, gen)
    assert not (loss & ~observed).any()
    assert loss.sum() / observed.sum() == pytest.approx(0.5, abs=0.02)
    kept = loss & ~token & ~rand
    assert kept.sum() / loss.sum() == pytest.approx(0.2, abs=0.02)
    assert rand.sum() / loss.sum() == pytest.approx(0.8 * 0.2, abs=0.02)
    loss, _, _ = make_masks(torch.ones(64, 500, dtype=torch.bool), replace(s, span=5), gen)
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, loss[0].int().numpy(), 0])))[::2]
    assert runs.min() >= 5 and loss.float().mean() == pytest.approx(0.5, abs=0.08)


def test_loss_formula_and_padding_never_enters_the_weights():
    pred = torch.tensor([[[1.0], [2.0], [3.0]]])
    target = torch.tensor([[[0.0], [0.0], [0.0]]])
    mask = torch.tensor([[True, True, False]])
    assert masked_reconstruction_loss(pred, target, mask).item() == pytest.approx(np.sqrt((1 + 4) / 2))
    sigma = torch.tensor([[[1.0], [0.5], [1e-6]]])  # the last step is padding with a sentinel uncertainty
    observed = torch.tensor([[True, True, False]])
    w = uncertainty_weights(sigma, observed)
    np.testing.assert_allclose(w[0, :2, 0], [0 + 1e-3, 1 + 1e-3], rtol=1e-6)
    expected = np.sqrt((1e-3 * 1 + (1 + 1e-3) * 4) / 2)
    assert masked_reconstruction_loss(pred, target, mask, w).item() == pytest.approx(expected, rel=1e-6)


def tiny(n_channels, **kw):
    return Teacher(TeacherConfig.of_size("tiny", n_channels=n_channels, dropout=0.0, **kw)).eval()


def test_mask_token_hides_the_masked_value_and_embeddings_are_shift_invariant():
    torch.manual_seed(0)
    model = tiny(2)
    # irregular steps on a 1/16 s grid, so a shift of 128 s is exact in float32
    values, times = torch.randn(1, 2, 20), torch.cumsum(torch.randint(1, 8, (1, 20)).float() / 16, 1)
    observed = torch.ones(1, 20, dtype=torch.bool)
    tokens, t, obs = model.tokenize(values, times, observed)
    masked = torch.zeros(1, 20, dtype=torch.bool)
    masked[0, 7] = True
    changed = tokens.clone()
    changed[0, 7] += 5.0
    with torch.no_grad():
        a = model(tokens, t, obs, masked)[0]
        b = model(changed, t, obs, masked)[0]
        c = model(changed, t, obs)[0]
        np.testing.assert_allclose(a, b, atol=1e-6)
        assert (a - c).abs().max() > 1e-3
        np.testing.assert_allclose(model.embed(values, times + 128.0, observed), model.embed(values, times, observed),
                                   atol=1e-4)


@pytest.mark.parametrize("attention", ["dense", "sparse", "scan"])
def test_patched_tokens_and_every_backend_run_end_to_end(attention):
    model = tiny(3, attention=attention, patch=4, block=8, topk=1, chunk=16)
    values = torch.randn(2, 3, 130)  # not a multiple of the patch: padded
    emb = model.embed(values, torch.arange(130.0).expand(2, 130), torch.ones(2, 130, dtype=torch.bool))
    assert emb.shape == (2, 32) and torch.isfinite(emb).all()


@pytest.fixture(scope="module")
def vowels():
    ds = load_dataset("JapaneseVowels")
    train, val, _ = split_dataset(ds, "group", test_groups=["test"])
    pre = fit_preprocessing(train, "stored", ds.length)
    cfg = TeacherConfig.of_size("tiny", n_channels=12, **time_scales(ds))
    return prepare(train, pre), prepare(val, pre), pre, cfg


def test_pretraining_lowers_masked_reconstruction_error_on_real_data(vowels, tmp_path):
    train, val, pre, cfg = vowels
    torch.manual_seed(0)
    s = PretrainSettings(steps=150, eval_every=50, checkpoint_every=150, warmup=10, lr=3e-3)
    summary = pretrain(TeacherCheckpoint(Teacher(cfg), pre, {}), train, val, s, str(tmp_path / "t"), progress=False)
    first, last = summary["history"][0]["val_rmse"], summary["final_val_rmse"]
    # normalised data: predicting the mean gives RMSE ~1; learning the LPC trajectories must beat that clearly
    assert last < 0.8 * first and last < 0.75


def test_resumed_run_ends_with_the_same_weights(vowels, tmp_path, monkeypatch):
    train, val, pre, cfg = vowels
    s = PretrainSettings(steps=30, eval_every=10, checkpoint_every=10, warmup=5)

    def run(out):
        torch.manual_seed(0)
        return pretrain(TeacherCheckpoint(Teacher(cfg), pre, {}), train, val, s, out, progress=False)

    run(str(tmp_path / "whole"))
    calls = {"n": 0}
    real = torch.nn.utils.clip_grad_norm_

    def dies_at_step_25(*a, **k):  # the process is killed during step 25, after the step-20 checkpoint
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", dies_at_step_25)
    with pytest.raises(KeyboardInterrupt):
        run(str(tmp_path / "killed"))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real)
    ckpt = load_teacher(tmp_path / "killed")
    assert ckpt.state["step"] == 20
    pretrain(ckpt, train, val, s, str(tmp_path / "killed"), progress=False)
    a = load_teacher(tmp_path / "whole").model.state_dict()
    b = load_teacher(tmp_path / "killed").model.state_dict()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=key)


def test_ddp_ranks_end_with_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        EDGEKIT, "pretrain", "GunPoint", "--size", "tiny", "--steps", "6", "--batch-size", "8",
                        "--eval-every", "3", "--checkpoint-every", "3", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    state = json.loads((out / "teacher.json").read_text())["state"]
    assert state["step"] == 6
    assert state["ddp"] == {"world_size": 2, "max_weight_diff_across_ranks": 0.0}


def _set(values, **kw):
    n, c, t = values.shape
    return WindowSet(values.astype(np.float32), None, tuple(f"c{i}" for i in range(c)), (), 10.0, name="bad", **kw)


def test_bad_windows_are_clear_errors():
    pre = fit_preprocessing(_set(np.ones((2, 1, 8))), "window", 8)
    values = np.ones((2, 1, 8))
    values[1] = np.nan
    with pytest.raises(UserError, match="window 1 has no observed values"):
        prepare(_set(values), pre)
    times = np.tile(np.arange(8.0), (2, 1))
    times[0, 3] = np.nan
    with pytest.raises(UserError, match="window 0, step 3: timestamp is NaN"):
        prepare(_set(np.ones((2, 1, 8)), timestamps=times), pre)
    sigma = np.ones((2, 1, 8), np.float32)
    sigma[1, 0, 2] = 0
    with pytest.raises(UserError, match="window 1, channel 'c0', step 2: uncertainty must be positive"):
        prepare(_set(np.ones((2, 1, 8)), uncertainty=sigma), pre)


def test_non_finite_loss_stops_training(vowels, tmp_path, monkeypatch):
    train, val, pre, cfg = vowels
    import edgekit.teacher.pretrain as pt

    monkeypatch.setattr(pt, "masked_reconstruction_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(UserError, match="non-finite at step 0"):
        pretrain(TeacherCheckpoint(Teacher(cfg), pre, {}), train, val, PretrainSettings(steps=5), str(tmp_path / "x"),
                 progress=False)
    assert not (tmp_path / "x").exists()


def test_finetune_and_embed_commands(tmp_path):
    run = lambda *a: subprocess.run([EDGEKIT, *map(str, a)], capture_output=True, text=True, timeout=300)  # noqa: E731
    r = run("pretrain", "BasicMotions", "--size", "tiny", "--steps", "20", "--out", tmp_path / "t", "--quiet")
    assert r.returncode == 0, r.stderr
    r = run("finetune", "BasicMotions", "--pretrained", tmp_path / "t", "--labels-per-class", "3", "--epochs", "3",
            "--out", tmp_path / "f", "--json", tmp_path / "f.json", "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "f.json").read_text())
    assert summary["windows"]["train"] == 12 and 0 <= summary["test_macro_f1"] <= 1
    r = run("embed", tmp_path / "f", "BasicMotions", "--out", tmp_path / "e.npy")
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "e.npy").shape == (80, 32)
    r = run("finetune", "GunPoint", "--pretrained", tmp_path / "t", "--epochs", "1", "--out", tmp_path / "g")
    assert r.returncode == 1 and "pretrained on 6 channels, GunPoint has 1" in r.stderr
    r = run("pretrain", "BasicMotions", "--size", "tiny", "--steps", "20", "--out", tmp_path / "t", "--quiet")
    assert r.returncode == 1 and "already exists" in r.stderr
