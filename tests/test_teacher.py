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
from edgekit.teacher.data import prepare
from edgekit.teacher.loss import masked_reconstruction_loss, uncertainty_weights
from edgekit.teacher.masking import make_masks
from edgekit.teacher.model import SIZES, Teacher, TeacherConfig, crop_starts, random_crops
from edgekit.teacher.pretrain import pretrain, reconstruction_rmse
from edgekit.teacher.settings import MaskSettings, PretrainSettings
from edgekit.teacher.store import TeacherCheckpoint, load_teacher, save_teacher
from edgekit.normalization import fit_preprocessing
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


def tiny(**kw):
    return Teacher(TeacherConfig.of_size("tiny", dropout=0.0, **kw)).eval()


def test_mask_token_hides_the_masked_value_and_embeddings_are_shift_invariant():
    torch.manual_seed(0)
    model = tiny(patch=2)
    # irregular steps on a 1/16 s grid, so a shift of 128 s is exact in float32
    values, times = torch.randn(1, 2, 40), torch.cumsum(torch.randint(1, 8, (1, 40)).float() / 16, 1)
    observed = torch.ones(1, 40, dtype=torch.bool)
    tok = model.tokenize(values, times, observed)
    assert tok.values.shape == (2, 20, 2)  # channel-independent: one sequence per channel
    masked = torch.zeros(2, 20, dtype=torch.bool)
    masked[0, 7] = True
    changed = tok._replace(values=tok.values.clone())
    changed.values[0, 7] += 5.0
    with torch.no_grad():
        a = model(tok, masked)[0]
        b = model(changed, masked)[0]
        c = model(changed)[0]
        np.testing.assert_allclose(a, b, atol=1e-6)
        assert (a - c).abs().max() > 1e-3
        np.testing.assert_allclose(model.embed(values, times + 128.0, observed), model.embed(values, times, observed),
                                   atol=1e-4)


def test_a_channel_is_pooled_by_the_mean_and_spread_of_its_tokens_and_older_heads_by_the_mean(tmp_path):
    torch.manual_seed(0)
    model = tiny().with_classifier(2, 3).eval()
    values, times = torch.randn(4, 2, 96), torch.arange(96.0)[None].expand(4, 96)
    observed = torch.ones(4, 96, dtype=torch.bool)
    with torch.no_grad():
        tokens = model.token_embeddings(values, times, observed)  # [B·C, L, d]
        expect = torch.cat([tokens.mean(1), (tokens.var(1, unbiased=False) + 1e-6).sqrt()], -1).reshape(4, -1)
        np.testing.assert_allclose(model.embed(values, times, observed), expect, atol=1e-5)
    # a head fine-tuned before the spread was pooled (no `pooling` in its config) reads the mean alone, as it did
    old = Teacher(replace(model.cfg, pooling="mean")).eval()
    save_teacher(tmp_path / "t", TeacherCheckpoint(old, None, {}, ("a", "b", "c")))
    meta = json.loads((tmp_path / "t" / "teacher.json").read_text())
    del meta["config"]["pooling"]
    (tmp_path / "t" / "teacher.json").write_text(json.dumps(meta))
    loaded = load_teacher(tmp_path / "t").model
    assert loaded.cfg.pooling == "mean" and loaded.classifier[-1].in_features == 2 * 32
    with torch.no_grad():
        np.testing.assert_allclose(loaded.classify(values, times, observed), old.classify(values, times, observed),
                                   atol=1e-5)


def test_one_encoder_serves_any_channel_count_and_keeps_the_amplitude():
    torch.manual_seed(0)
    model = tiny()
    x = torch.randn(2, 3, 64)
    t, o = torch.arange(64.0).expand(2, 64), torch.ones(2, 64, dtype=torch.bool)
    with torch.no_grad():
        emb = model.embed(x, t, o)
        assert emb.shape == (2, 3 * 64)  # mean and spread of each channel's 32-wide tokens
        # a channel's embedding does not depend on the other channels
        np.testing.assert_allclose(model.embed(x[:, 1:2], t, o), emb[:, 64:128], atol=1e-5)
        # instance normalisation keeps the shape; the embedded mean/scale keep the amplitude
        assert (model.embed(x * 10, t, o) - emb).abs().max() > 1e-3
        clf = model.with_classifier(3, 4)
        assert clf.classify(x, t, o).shape == (2, 4)
        assert clf.encoder_only().classifier is None


@pytest.mark.parametrize("attention", ["dense", "sparse", "scan"])
def test_patched_tokens_and_every_backend_run_end_to_end(attention):
    model = tiny(attention=attention, patch=4, block=8, topk=1, chunk=16)
    values = torch.randn(2, 3, 130)  # not a multiple of the patch: padded
    emb = model.embed(values, torch.arange(130.0).expand(2, 130), torch.ones(2, 130, dtype=torch.bool))
    assert emb.shape == (2, 3 * 2 * 32) and torch.isfinite(emb).all()  # mean and spread of each channel


def test_a_window_longer_than_the_context_is_seen_in_crops():
    torch.manual_seed(0)
    model = tiny(patch=4, context=8)
    x, t = torch.randn(3, 2, 100), torch.arange(100.0).expand(3, 100)  # 25 tokens of 4 samples
    o = torch.ones(3, 100, dtype=torch.bool)
    o[1, 40:] = False  # a recording of 10 tokens, padded
    o[2, 4:96] = False  # observed only at both ends: most crops fall into the gap
    starts = crop_starts(25, 8)
    assert starts[0] == 0 and starts[-1] == 17 and max(np.diff(starts)) <= 4
    with torch.no_grad():
        emb = model.embed(x, t, o)
        assert torch.isfinite(emb).all()
        # inference: the crops' channel embeddings (mean and spread of their observed tokens) averaged by their
        # observed tokens, each crop encoded with its own time axis; a crop showing only padding or a gap adds nothing
        for i in range(3):
            sums, counts = 0, 0
            for s in starts:
                cut = slice(4 * s, 4 * s + 32)
                tok = model.tokenize(x[i : i + 1, :, cut], t[i : i + 1, cut], o[i : i + 1, cut])
                if tok.observed.any():
                    seen = tok.observed[0]
                    tokens = model.encode(tok)[0][:, seen]  # the crop's observed tokens, per channel
                    pooled = torch.cat([tokens.mean(1), (tokens.var(1, unbiased=False) + 1e-6).sqrt()], -1)
                    sums, counts = sums + pooled * seen.sum(), counts + seen.sum()
            close(emb[i : i + 1], (sums / counts).reshape(1, -1), 1e-5)
    # training: one random crop per window, inside its observed span
    obs = o.reshape(3, 25, 4).any(-1)
    draws = torch.stack([random_crops(obs, 8) for _ in range(200)])
    assert draws[:, 0].min() == 0 and draws[:, 0].max() == 17
    assert draws[:, 1].max() == 2 and draws[:, 2].unique().tolist() == list(range(18))
    model.train()
    assert model.embed(x, t, o).shape == emb.shape


def test_short_windows_are_interpolated_to_the_shortest_token_sequence():
    ds = load_dataset("JapaneseVowels")  # 29 frames, padded
    pre = fit_preprocessing(ds, "stored", ds.length)
    data = prepare(ds.subset(np.arange(4)), pre, patch=8)
    assert data.values.shape == (4, 12, 128)
    # the padding stays unobserved, and the interpolated series passes through the observed frames
    frames = int(ds.mask[0].sum())
    assert data.observed[0].sum() < 128 and data.observed[0, 0]
    assert 0 < frames < 29


@pytest.fixture(scope="module")
def vowels():
    ds = load_dataset("JapaneseVowels")
    train, val, _ = split_dataset(ds, "group", test_groups=["test"])
    pre = fit_preprocessing(train, "stored", ds.length)
    cfg = TeacherConfig.of_size("tiny", patch=4)
    return [prepare(train, pre, 4)], [prepare(val, pre, 4)], pre, cfg


def test_pretraining_lowers_masked_reconstruction_error_on_real_data(vowels, tmp_path):
    train, val, pre, cfg = vowels
    torch.manual_seed(0)
    s = PretrainSettings(steps=150, tokens_per_step=1024, eval_every=50, checkpoint_every=150, warmup=10, lr=3e-3)
    model = Teacher(cfg)
    before = reconstruction_rmse(model, val, s)
    summary = pretrain(TeacherCheckpoint(model, pre, {}), train, val, s, str(tmp_path / "t"), progress=False)
    # instance-normalised values: predicting the mean gives RMSE ~1; learning the LPC trajectories beats it clearly
    assert summary["final_val_rmse"] < 0.7 * before and summary["final_val_rmse"] < 0.75


def test_resumed_run_ends_with_the_same_weights(vowels, tmp_path, monkeypatch):
    train, val, pre, cfg = vowels
    s = PretrainSettings(steps=30, tokens_per_step=512, eval_every=10, checkpoint_every=10, warmup=5)

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
                        EDGEKIT, "pretrain", "GunPoint", "--size", "tiny", "--steps", "6", "--tokens-per-step", "256",
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
    pre = fit_preprocessing(_set(np.arange(16.0).reshape(2, 1, 8)), "window", 8)
    values = np.ones((2, 1, 8))
    values[1] = np.nan
    with pytest.raises(UserError, match="window 1 has no observed values"):
        prepare(_set(values), pre, 1)
    times = np.tile(np.arange(8.0), (2, 1))
    times[0, 3] = np.nan
    with pytest.raises(UserError, match="window 0, step 3: timestamp is NaN"):
        prepare(_set(np.ones((2, 1, 8)), timestamps=times), pre, 1)
    sigma = np.ones((2, 1, 8), np.float32)
    sigma[1, 0, 2] = 0
    with pytest.raises(UserError, match="window 1, channel 'c0', step 2: uncertainty must be positive"):
        prepare(_set(np.ones((2, 1, 8)), uncertainty=sigma), pre, 1)


def test_non_finite_loss_stops_training(vowels, tmp_path, monkeypatch):
    train, val, pre, cfg = vowels
    import edgekit.teacher.pretrain as pt

    monkeypatch.setattr(pt, "masked_reconstruction_loss",
                        lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(UserError, match="non-finite at step 0"):
        pretrain(TeacherCheckpoint(Teacher(cfg), pre, {}), train, val, PretrainSettings(steps=5, tokens_per_step=256),
                 str(tmp_path / "x"), progress=False)
    assert not (tmp_path / "x").exists()


def test_finetune_and_embed_commands(tmp_path):
    run = lambda *a: subprocess.run([EDGEKIT, *map(str, a)], capture_output=True, text=True, timeout=300)  # noqa: E731
    r = run("pretrain", "BasicMotions", "--size", "tiny", "--steps", "20", "--out", tmp_path / "t", "--quiet")
    assert r.returncode == 0, r.stderr
    r = run("finetune", "BasicMotions", "--pretrained", tmp_path / "t", "--labels-per-class", "3", "--steps", "6",
            "--out", tmp_path / "f", "--json", tmp_path / "f.json", "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "f.json").read_text())
    assert summary["windows"]["train"] == 12 and 0 <= summary["test_macro_f1"] <= 1
    # fine-tuned with and without time shifts, one run each; the teacher answers with the runs' mean probabilities
    assert set(summary["runs"]) == {"0.1", "0"}
    teacher = load_teacher(tmp_path / "f").model
    runs = teacher.members
    assert len(runs) == 2 and summary["parameters"] == 2 * runs[0].parameter_count()
    x, times = torch.randn(4, 6, 100), torch.arange(100.0).expand(4, 100)
    observed = torch.ones(4, 100, dtype=torch.bool)
    with torch.no_grad():
        p0, p1 = (torch.softmax(m.classify(x, times, observed), -1) for m in runs)
        assert not torch.allclose(p0, p1)
        torch.testing.assert_close(torch.softmax(teacher.classify(x, times, observed), -1), (p0 + p1) / 2)
    # the rest in this process (the same command, without another interpreter start-up)
    from click.testing import CliRunner

    from edgekit_runtime.cli import main

    here = lambda *a: CliRunner().invoke(main, list(map(str, a)))  # noqa: E731
    r = here("embed", tmp_path / "f", "BasicMotions", "--out", tmp_path / "e.npy")
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "e.npy").shape == (80, 2 * 6 * 64)  # both runs' embeddings side by side
    # a teacher pretrained on 6 channels fine-tunes on 1 (channel-independent tokens)
    # and runs with the attention backend asked for (pretrained as dense)
    r = here("finetune", "GunPoint", "--pretrained", tmp_path / "t", "--attention", "scan", "--steps", "4",
             "--out", tmp_path / "g", "--quiet")
    assert r.exit_code == 0, r.output
    assert {m.cfg.attention for m in load_teacher(tmp_path / "g").model.members} == {"scan"}
    r = here("pretrain", "BasicMotions", "--size", "tiny", "--steps", "20", "--out", tmp_path / "t", "--quiet")
    assert r.exit_code == 1 and "already exists" in r.output
    # fine-tuning starts from the general teacher unless told otherwise, so a new teacher's shape alone is a mistake
    for command in ("finetune", "pretrain"):
        r = here(command, "GunPoint", "--pretrained", "general", "--size", "tiny", "--out", tmp_path / "x")
        assert r.exit_code == 1 and "add --pretrained none" in r.output and r.output.count("\n") == 1
    r = here("pretrain", "GunPoint", "--pretrained", "general", "--no-time-bias", "--out", tmp_path / "x")
    assert r.exit_code == 1 and "--time-bias/--no-time-bias: only a new teacher" in r.output
    r = here("finetune", "GunPoint", "--size", "tiny", "--out", tmp_path / "x")
    assert r.exit_code == 1 and "'general' keeps its own" in r.output and not (tmp_path / "x").exists()
    r = here("finetune", "GunPoint", "--pretrained", "none", "--size", "tiny", "--steps", "2", "--out", tmp_path / "n")
    assert r.exit_code == 0 and ", new, " in r.output, r.output
    new = load_teacher(tmp_path / "n")
    assert new.state["pretrained"] is None and new.model.cfg.d_model == SIZES["tiny"]["d_model"]


def test_the_shipped_general_teacher_loads_and_a_tampered_one_is_refused(tmp_path):
    import shutil

    from edgekit.teacher.general import SHIPPED, resolve

    ckpt = load_teacher(resolve("general"))
    assert ckpt.model.parameter_count() >= 1_000_000 and ckpt.preprocessing is None
    assert (SHIPPED / "model.pt").stat().st_size <= 15e6
    corpus = ckpt.state["corpus"]
    assert {"BasicMotions", "JapaneseVowels", "ACSF1", "GunPoint", "PLAID", "Daphnet"} <= {c["name"] for c in corpus}
    assert all(len(c["sha256"]) == 64 for c in corpus) and "TEST" not in " ".join(c["origin"] for c in corpus)
    history = ckpt.state["history"]
    assert history[-1]["val_rmse"] < 0.8 * history[0]["val_rmse"]
    bad = tmp_path / "general"
    shutil.copytree(SHIPPED, bad)
    weights = bytearray((bad / "model.pt").read_bytes())
    weights[len(weights) // 2] ^= 1
    (bad / "model.pt").write_bytes(bytes(weights))
    with pytest.raises(UserError, match="sha256 differs"):
        load_teacher(bad)
    (bad / "teacher.json").write_text("{}")
    with pytest.raises(UserError, match="records no weights_sha256; not a teacher edgekit wrote"):
        load_teacher(bad)


def test_the_general_teacher_is_the_same_model_with_any_attention_backend():
    from edgekit.teacher.general import resolve

    dense = load_teacher(resolve("general")).model.encoder_only().eval()
    torch.manual_seed(0)
    x, t, o = torch.randn(2, 3, 400), torch.arange(400.0).expand(2, 400), torch.ones(2, 400, dtype=torch.bool)
    with torch.no_grad():
        ref = dense.embed(x, t, o)
        for attention, block, topk in (("scan", 64, 4), ("sparse", 64, 4)):  # one block covers the context: exact
            close(dense.with_backend(attention, block, topk).eval().embed(x, t, o), ref, atol=1e-4)
        sparse = dense.with_backend("sparse", 8, 1).eval().embed(x, t, o)  # two of the eight blocks: not the same
        assert not torch.allclose(sparse, ref, atol=1e-3)


def test_the_general_corpus_matches_its_manifest():
    from edgekit.teacher.corpus import load_corpus, manifest
    from edgekit.teacher.general import SHIPPED

    shipped = json.loads((SHIPPED / "teacher.json").read_text())["state"]["corpus"]
    assert manifest(load_corpus()) == shipped
