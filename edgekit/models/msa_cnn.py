"""A small multi-scale CNN with self-attention (MSA-CNN style) for window classification.

Layout, for input `[B, C, T]` viewed as a one-plane image `[B, 1, C, T]`:
  multi-scale module  one branch per scale s: average-pool time by s, a temporal 1xk convolution, BatchNorm,
                      GELU, then average-pool to the common length T // pool; branches are concatenated, so each
                      sees the signal at its own temporal resolution;
  spatial conv        a Cx1 convolution mixes all channels into `dim` features per time step;
  attention           multi-head self-attention over the T // pool time steps (pre-norm, residual), written with
                      Linear/matmul/softmax because nn.MultiheadAttention does not convert cleanly to TFLite;
  head                mean over time, dropout, linear classifier.
1-D convolutions are written as Conv2d with 1xk kernels on a `[B, 1, C, T]` tensor: TFLite has no 1-D
convolution, and this form converts to a plain CONV_2D without extra reshapes or transposes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MSACNNConfig:
    n_channels: int
    n_classes: int
    length: int
    filters: int = 8
    scales: tuple[int, ...] = (1, 2, 4)
    kernel: int = 7
    pool: int = 4
    dim: int = 32
    heads: int = 4
    dropout: float = 0.2

    def __post_init__(self):
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        if any(self.pool % s for s in self.scales):
            raise ValueError(f"pool ({self.pool}) must be a multiple of every scale {self.scales}")
        if self.length // self.pool < 1:
            raise ValueError(f"window length {self.length} is shorter than the pooling factor {self.pool}")

    @property
    def tokens(self) -> int:
        return self.length // self.pool

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scales"] = list(self.scales)
        return d


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.scale = self.head_dim**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, D]
        length, dim = x.shape[1], x.shape[2]
        qkv = self.qkv(x).reshape(-1, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, H, L, hd]
        attn = torch.softmax(torch.matmul(q * self.scale, k.transpose(-2, -1)), dim=-1)
        out = torch.matmul(self.drop(attn), v).transpose(1, 2).reshape(-1, length, dim)
        return self.proj(out)


class MSACNN(nn.Module):
    def __init__(self, cfg: MSACNNConfig):
        super().__init__()
        self.cfg = cfg
        f, k = cfg.filters, cfg.kernel
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.AvgPool2d((1, s)) if s > 1 else nn.Identity(),
                nn.Conv2d(1, f, (1, k), padding=(0, k // 2), bias=False),
                nn.BatchNorm2d(f),
                nn.GELU(),
                nn.AvgPool2d((1, cfg.pool // s)),
            )
            for s in cfg.scales
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(f * len(cfg.scales), cfg.dim, (cfg.n_channels, 1), bias=False),
            nn.BatchNorm2d(cfg.dim),
            nn.GELU(),
        )
        self.norm = nn.LayerNorm(cfg.dim)
        self.attn = SelfAttention(cfg.dim, cfg.heads, cfg.dropout)
        self.head = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Dropout(cfg.dropout), nn.Linear(cfg.dim, cfg.n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features `[B, dim]` of windows `[B, C, T]`."""
        x = x.unsqueeze(1)
        x = torch.cat([b(x) for b in self.branches], dim=1)  # [B, F*S, C, T']
        x = self.spatial(x).squeeze(2).transpose(1, 2)  # [B, T', dim]
        x = x + self.attn(self.norm(x))
        return x.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
