"""Attention for the teacher: one interface, three backends.

All three compute softmax(q·kᵀ/√d + bias) v over the tokens of a window, with padded (unobserved) keys excluded,
and the same optional relative-time bias  b_h(Δt) = Σ_f a_hf · exp(-b_hf · Δt²)  (Δt in seconds between the
query's and the key's real timestamps, so the layer is shift-invariant in time and gaps cost nothing):

  dense   torch's scaled_dot_product_attention with the bias materialised as an N×N matrix. O(N²) memory.
  sparse  block-sparse top-k (MoBA style): keys in blocks of B; each query block attends to its own block plus the
          k blocks whose mean key scores highest against the block's mean query. O(N·(k+1)·B) work and memory.
          With k covering every block it is exactly dense attention.
  scan    exact attention tile by tile with an online softmax (running max, sum and output), never holding the
          N×N scores; the bias is evaluated per tile. Each query chunk is recomputed in the backward pass
          (activation checkpointing), so memory grows linearly with N while the result equals dense.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

BACKENDS = ("dense", "sparse", "scan")


class TimeBias(nn.Module):
    """b_h(Δt) = Σ_f a_hf · exp(-b_hf · Δt²), learned per head. `a` starts at zero (no bias); the b_hf start at
    1/scale² for scales spread geometrically between `min_scale` and `max_scale` seconds."""

    def __init__(self, heads: int, terms: int, min_scale: float, max_scale: float):
        super().__init__()
        scales = torch.logspace(math.log10(min_scale), math.log10(max_scale), terms)
        self.a = nn.Parameter(torch.zeros(heads, terms))
        self.log_b = nn.Parameter((-2 * torch.log(scales)).repeat(heads, 1))

    def forward(self, tq: torch.Tensor, tk: torch.Tensor) -> torch.Tensor:
        """Times [B, Nq] and [B, Nk] -> bias [B, H, Nq, Nk]."""
        d2 = (tq[:, None, :, None] - tk[:, None, None, :]) ** 2  # [B, 1, Nq, Nk]
        b = self.log_b.exp()
        out = 0.0
        for f in range(self.a.shape[1]):
            out = out + self.a[:, f, None, None] * torch.exp(-b[:, f, None, None] * d2)
        return out


def dense_attention(q, k, v, times, key_pad, bias: TimeBias | None):
    """q, k, v [B, H, N, d]; times [B, N]; key_pad [B, N] True where the key is padding."""
    mask = torch.zeros(key_pad.shape, dtype=q.dtype, device=q.device).masked_fill(key_pad, float("-inf"))
    mask = mask[:, None, None, :]
    if bias is not None:
        mask = mask + bias(times, times)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _scan_chunk(q, k, v, tq, tk, key_pad, bias, k_chunk: int):
    """Exact attention of one query chunk over all keys, one key tile at a time (online softmax)."""
    scale = q.shape[-1] ** -0.5
    b, h, nq, d = q.shape
    m = torch.full((b, h, nq), float("-inf"), dtype=q.dtype, device=q.device)
    l = torch.zeros((b, h, nq), dtype=q.dtype, device=q.device)
    acc = torch.zeros((b, h, nq, v.shape[-1]), dtype=q.dtype, device=q.device)
    for ks in range(0, k.shape[2], k_chunk):
        kc, vc = k[:, :, ks : ks + k_chunk], v[:, :, ks : ks + k_chunk]
        s = torch.matmul(q, kc.transpose(-2, -1)) * scale
        if bias is not None:
            s = s + bias(tq, tk[:, ks : ks + k_chunk])
        s = s.masked_fill(key_pad[:, None, None, ks : ks + k_chunk], float("-inf"))
        m_new = torch.maximum(m, s.amax(-1))
        m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # a tile of only padding
        p = torch.exp(s - m_safe[..., None])
        correction = torch.exp(m - m_safe)
        l = l * correction + p.sum(-1)
        acc = acc * correction[..., None] + torch.matmul(p, vc)
        m = m_new
    return acc / l[..., None]


def scan_attention(q, k, v, times, key_pad, bias: TimeBias | None, q_chunk: int = 256, k_chunk: int = 256):
    outs = []
    for qs in range(0, q.shape[2], q_chunk):
        args = (q[:, :, qs : qs + q_chunk], k, v, times[:, qs : qs + q_chunk], times, key_pad, bias, k_chunk)
        if torch.is_grad_enabled() and q.requires_grad:
            outs.append(checkpoint(_scan_chunk, *args, use_reentrant=False))
        else:
            outs.append(_scan_chunk(*args))
    return torch.cat(outs, dim=2)


def sparse_attention(q, k, v, times, key_pad, bias: TimeBias | None, block: int = 64, topk: int = 4):
    b, h, n, d = q.shape
    nb = -(-n // block)
    pad = nb * block - n
    if pad:  # pad to whole blocks; the padded keys are masked out
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        times = F.pad(times, (0, pad))
        key_pad = F.pad(key_pad, (0, pad), value=True)
    qb = q.reshape(b, h, nb, block, d)
    kb = k.reshape(b, h, nb, block, d)
    vb = v.reshape(b, h, nb, block, -1)
    keep = (~key_pad).reshape(b, 1, nb, block, 1).to(q.dtype)
    # Block scores from mean queries and mean (observed) keys; the own block is always selected.
    k_mean = (kb * keep).sum(3) / keep.sum(3).clamp_min(1)
    q_mean = qb.mean(3)
    scores = torch.matmul(q_mean, k_mean.transpose(-2, -1))  # [b, h, nb, nb]
    empty = keep.sum(3)[..., 0] == 0  # [b, 1, nb] blocks of only padding are never selected
    scores = scores.masked_fill(empty[:, :, None, :], float("-inf"))
    eye = torch.eye(nb, dtype=torch.bool, device=q.device)
    scores = scores.masked_fill(eye, float("inf"))
    sel = scores.topk(min(topk + 1, nb), dim=-1).indices  # [b, h, nb, k+1]
    kk = sel.shape[-1]

    def gather(x):  # [b, h, nb, block, e] -> [b, h, nb, kk*block, e] of the selected blocks
        e = x.shape[-1]
        idx = sel[..., None, None].expand(b, h, nb, kk, block, e)
        src = x[:, :, None].expand(b, h, nb, nb, block, e)
        return torch.gather(src, 3, idx).reshape(b, h, nb, kk * block, e)

    ks, vs = gather(kb), gather(vb)
    tb = times.reshape(b, 1, nb, block, 1).expand(b, h, nb, block, 1)
    ts = gather(tb)[..., 0]  # [b, h, nb, kk*block]
    pads = gather(key_pad.reshape(b, 1, nb, block, 1).expand(b, h, nb, block, 1).to(q.dtype))[..., 0] > 0
    s = torch.matmul(qb, ks.transpose(-2, -1)) * d**-0.5  # [b, h, nb, block, kk*block]
    if bias is not None:
        d2 = (times.reshape(b, 1, nb, block, 1) - ts[:, :, :, None, :]) ** 2
        bb = bias.log_b.exp()
        for f in range(bias.a.shape[1]):
            s = s + bias.a[None, :, f, None, None, None] * torch.exp(-bb[None, :, f, None, None, None] * d2)
    # A selected block of only padding (possible when fewer than k+1 blocks hold data) adds nothing: its keys are
    # masked. Duplicate selections cannot happen: topk returns distinct indices.
    s = s.masked_fill(pads[:, :, :, None, :], float("-inf"))
    out = torch.matmul(torch.softmax(s, dim=-1), vs)  # [b, h, nb, block, e]
    return out.reshape(b, h, nb * block, -1)[:, :, :n]


class Attention(nn.Module):
    """Multi-head self-attention with a selectable backend and an optional relative-time bias."""

    def __init__(self, dim: int, heads: int, backend: str = "dense", time_bias: bool = True, bias_terms: int = 4,
                 min_scale: float = 0.01, max_scale: float = 100.0, block: int = 64, topk: int = 4,
                 chunk: int = 256):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown attention backend {backend!r}; choose from {', '.join(BACKENDS)}")
        self.heads, self.backend, self.block, self.topk, self.chunk = heads, backend, block, topk, chunk
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias = TimeBias(heads, bias_terms, min_scale, max_scale) if time_bias else None

    def attention_macs(self, inp, out) -> int:
        """q·kᵀ and weights·v products: all N keys per query for dense/scan, (k+1)·B for sparse."""
        b, n, dim = inp[0].shape
        keys = n if self.backend != "sparse" else min(n, (self.topk + 1) * self.block)
        return 2 * b * n * keys * dim

    def forward(self, x, times, key_pad):
        b, n, dim = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        if self.backend == "dense":
            out = dense_attention(q, k, v, times, key_pad, self.bias)
        elif self.backend == "scan":
            out = scan_attention(q, k, v, times, key_pad, self.bias, self.chunk, self.chunk)
        else:
            out = sparse_attention(q, k, v, times, key_pad, self.bias, self.block, self.topk)
        return self.proj(out.transpose(1, 2).reshape(b, n, dim))
