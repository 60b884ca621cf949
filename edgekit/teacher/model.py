"""The teacher: a masked time-series encoder in the style of Astromer 2.

A token is one time step, or a patch of P steps for long windows. Its input is a value embedding of the channel
vector (a Linear of the C·P values) plus a sinusoidal encoding of the token's real timestamp in seconds (relative
to the window start), so irregular sampling and gaps are represented as they are. At masked positions a learnable
MASK vector replaces the value embedding, so the model knows which inputs it must infer. A pre-norm Transformer
encoder follows (attention backend per model: dense, sparse or scan, see attention.py). The model exposes per-token
embeddings, a pooled embedding per window (mean over observed tokens), a reconstruction head (the token's values)
and, once fine-tuned, a classification head.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .attention import BACKENDS, Attention

SIZES = {
    "tiny": dict(d_model=32, layers=2, heads=2, ff=64),
    "small": dict(d_model=64, layers=3, heads=4, ff=128),
    "base": dict(d_model=128, layers=4, heads=4, ff=256),
    "large": dict(d_model=256, layers=6, heads=4, ff=512),
}


@dataclass(frozen=True)
class TeacherConfig:
    n_channels: int
    d_model: int = 256
    layers: int = 6
    heads: int = 4
    ff: int = 512
    dropout: float = 0.1
    patch: int = 1
    attention: str = "dense"
    time_bias: bool = True
    bias_terms: int = 4
    block: int = 64
    topk: int = 4
    chunk: int = 256
    min_period: float = 0.01  # seconds: shortest period of the time encoding (about two sample spacings)
    max_period: float = 1000.0  # seconds: longest period (a few window durations)
    n_classes: int = 0

    def __post_init__(self):
        if self.attention not in BACKENDS:
            raise ValueError(f"unknown attention backend {self.attention!r}; choose from {', '.join(BACKENDS)}")
        if self.d_model % self.heads or self.d_model % 2:
            raise ValueError(f"d_model ({self.d_model}) must be even and divisible by heads ({self.heads})")
        if self.patch < 1:
            raise ValueError("patch must be >= 1")

    @classmethod
    def of_size(cls, size: str, **overrides) -> "TeacherConfig":
        if size not in SIZES:
            raise ValueError(f"unknown teacher size {size!r}; choose from {', '.join(SIZES)}")
        return cls(**{**SIZES[size], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


class TimeEncoding(nn.Module):
    def __init__(self, dim: int, min_period: float, max_period: float):
        super().__init__()
        periods = torch.logspace(math.log10(min_period), math.log10(max_period), dim // 2)
        self.register_buffer("omega", 2 * math.pi / periods, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # [B, L] seconds -> [B, L, dim]
        phase = t[..., None] * self.omega
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TeacherConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg.d_model, cfg.heads, cfg.attention, cfg.time_bias, cfg.bias_terms,
                              cfg.min_period, cfg.max_period, cfg.block, cfg.topk, cfg.chunk)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.ff), nn.GELU(), nn.Dropout(cfg.dropout),
                                nn.Linear(cfg.ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, times, key_pad):
        x = x + self.drop(self.attn(self.norm1(x), times, key_pad))
        return x + self.drop(self.ff(self.norm2(x)))


class Teacher(nn.Module):
    def __init__(self, cfg: TeacherConfig):
        super().__init__()
        self.cfg = cfg
        token_dim = cfg.n_channels * cfg.patch
        self.value = nn.Linear(token_dim, cfg.d_model)
        self.mask_token = nn.Parameter(torch.randn(cfg.d_model) * 0.02)
        self.time = TimeEncoding(cfg.d_model, cfg.min_period, cfg.max_period)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.reconstruct = nn.Linear(cfg.d_model, token_dim)
        self.classifier = nn.Linear(cfg.d_model, cfg.n_classes) if cfg.n_classes else None

    def tokenize(self, values: torch.Tensor, times: torch.Tensor, observed: torch.Tensor):
        """values [B, C, T], times [B, T], observed [B, T] -> token values [B, L, C·P], token times [B, L]
        (relative to the window start), token observed [B, L]. T is padded to whole patches (padding unobserved)."""
        p = self.cfg.patch
        b, c, t = values.shape
        pad = (-t) % p
        if pad:
            values = nn.functional.pad(values, (0, pad))
            times = torch.cat([times, times[:, -1:].expand(b, pad)], dim=1)
            observed = nn.functional.pad(observed, (0, pad), value=False)
        n = values.shape[2] // p
        tokens = values.reshape(b, c, n, p).permute(0, 2, 1, 3).reshape(b, n, c * p)
        t_tok = times.reshape(b, n, p)[:, :, 0]
        t_tok = t_tok - t_tok[:, :1]
        return tokens, t_tok, observed.reshape(b, n, p).any(-1)

    def encode(self, tokens, times, observed, masked=None):
        """Token embeddings [B, L, d] and pooled embeddings [B, d]. `masked` [B, L]: positions whose value
        embedding is replaced by the MASK token."""
        x = self.value(tokens)
        if masked is not None:
            x = torch.where(masked[..., None], self.mask_token.to(x.dtype), x)
        x = x + self.time(times)
        key_pad = ~observed
        for layer in self.layers:
            x = layer(x, times, key_pad)
        x = self.norm(x)
        w = observed[..., None].to(x.dtype)
        pooled = (x * w).sum(1) / w.sum(1).clamp_min(1)
        return x, pooled

    def forward(self, tokens, times, observed, masked=None):
        """Reconstruction of every token's values [B, L, V], token embeddings and pooled embeddings."""
        x, pooled = self.encode(tokens, times, observed, masked)
        return self.reconstruct(x), x, pooled

    def embed(self, values, times, observed):
        """Pooled embedding [B, d] of whole windows."""
        return self.encode(*self.tokenize(values, times, observed))[1]

    def classify(self, values, times, observed):
        if self.classifier is None:
            raise RuntimeError("this teacher has no classification head (fine-tune it first)")
        return self.classifier(self.embed(values, times, observed))

    def macs(self, length: int) -> int:
        """Multiply-accumulates to embed and classify one window of `length` samples."""
        from ..models.macs import macs_of

        class Window(nn.Module):
            def __init__(self, teacher):
                super().__init__()
                self.teacher = teacher

            def forward(self, values, times, observed):
                emb = self.teacher.embed(values, times, observed)
                return self.teacher.classifier(emb) if self.teacher.classifier is not None else emb

        c = self.cfg.n_channels
        return macs_of(Window(self), torch.zeros(1, c, length), torch.arange(length, dtype=torch.float32)[None],
                       torch.ones(1, length, dtype=torch.bool))

    def with_classifier(self, n_classes: int) -> "Teacher":
        """A copy of this teacher's config with a fresh classification head of `n_classes`."""
        from dataclasses import replace

        model = Teacher(replace(self.cfg, n_classes=n_classes))
        missing, unexpected = model.load_state_dict(self.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("classifier.") for k in missing)
        return model
