"""The teacher: a masked time-series encoder in the style of Astromer 2, with channel-independent patch tokens.

Every channel of a window is encoded on its own (PatchTST style), so one encoder serves any channel count, window
length and sampling rate, and a teacher pretrained on a corpus of many datasets is fine-tuned on any of them.
A token is a patch of P consecutive samples of one channel:

- values are normalised per window and channel over the observed samples (instance normalisation), so the corpus'
  scales do not matter; the channel's mean and log standard deviation (in the dataset-normalised units the rest of
  edgekit uses) are embedded and added to each of its tokens, so the amplitude is not lost;
- the value embedding is a Linear of the P normalised values; at masked positions a learnable MASK vector replaces
  it, so the model knows which inputs it must infer;
- time: a sinusoidal encoding of the token's real timestamp, measured from the window start in units of the
  window's duration (so irregular sampling and gaps are represented as they are, and a 30 kHz waveform and a 10 Hz
  motion share one scale); the attention's relative-time bias uses the same units.

A pre-norm Transformer encoder follows (attention backend per model: dense, sparse or scan, see attention.py).
A channel's embedding is the mean and the standard deviation of its observed tokens' embeddings (2d; the spread says
how the window's parts differ, which the mean alone loses: a linear probe of the general teacher on ArrowHead, OSULeaf
and GunPoint read 0.79 / 0.67 / 0.95 against 0.75 / 0.64 / 0.91); a window's embedding concatenates its channels'
(C·2d), which the classification head of a fine-tuned teacher reads. Teachers fine-tuned before the spread was
pooled read the mean alone (`pooling`).

The encoder sees at most `context` tokens at once: the crop length it was pretrained on. A longer window is seen as
in pretraining, in crops with their own time axis and normalisation: one random crop of its observed span per
window while fine-tuning (which also augments a few long windows into many views), and at inference the mean over
overlapping crops half a crop apart. On ACSF1 (183 tokens) the whole window at once, outside the time scales the
encoder was pretrained on, fine-tuned to 0.77 / 0.76 (seeds 0 / 1) in the time crops reach 0.89 / 0.85
(docs/teacher-and-distillation.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import torch
from torch import nn

from .attention import BACKENDS, Attention

SIZES = {
    "tiny": dict(d_model=32, layers=2, heads=2, ff=64),
    "small": dict(d_model=64, layers=3, heads=4, ff=128),
    "base": dict(d_model=128, layers=4, heads=4, ff=256),
    "large": dict(d_model=128, layers=6, heads=4, ff=512),
}
POOLINGS = ("mean+sd", "mean")
MIN_TOKENS = 16  # windows shorter than this many patches are interpolated up to it (teacher/data.py)


@dataclass(frozen=True)
class TeacherConfig:
    d_model: int = 128
    layers: int = 6
    heads: int = 4
    ff: int = 512
    dropout: float = 0.1
    patch: int = 8
    attention: str = "dense"
    time_bias: bool = True
    bias_terms: int = 4
    block: int = 64
    topk: int = 4
    chunk: int = 256
    min_period: float = 1 / 128  # shortest period of the time encoding, in window durations
    max_period: float = 4.0  # longest period, in window durations
    context: int = 64  # most tokens one pass sees: the pretraining crop (pretrain.py sets it); longer windows: crops
    pooling: str = "mean+sd"  # of a channel's token embeddings; "mean": teachers written before the spread was pooled
    n_channels: int = 0  # set with the classification head
    n_classes: int = 0

    def __post_init__(self):
        if self.attention not in BACKENDS:
            raise ValueError(f"unknown attention backend {self.attention!r}; choose from {', '.join(BACKENDS)}")
        if self.d_model % self.heads or self.d_model % 2:
            raise ValueError(f"d_model ({self.d_model}) must be even and divisible by heads ({self.heads})")
        if self.patch < 1 or self.context < 1:
            raise ValueError("patch and context must be >= 1")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose from {', '.join(POOLINGS)}")
        if bool(self.n_classes) != bool(self.n_channels):
            raise ValueError("a classification head needs both n_channels and n_classes")

    @classmethod
    def of_size(cls, size: str, **overrides) -> "TeacherConfig":
        if size not in SIZES:
            raise ValueError(f"unknown teacher size {size!r}; choose from {', '.join(SIZES)}")
        return cls(**{**SIZES[size], **overrides})

    @property
    def channel_width(self) -> int:
        """Width of a channel's embedding."""
        return self.d_model * (2 if self.pooling == "mean+sd" else 1)

    def to_dict(self) -> dict:
        return asdict(self)


class Tokens(NamedTuple):
    """A batch of B windows of C channels as B·C token sequences of length L."""

    values: torch.Tensor  # [B·C, L, P] instance-normalised values, 0 where unobserved
    times: torch.Tensor  # [B·C, L] token start times in window durations
    observed: torch.Tensor  # [B·C, L] bool: the patch holds an observed sample
    stats: torch.Tensor  # [B·C, 2] the channel's mean and log standard deviation
    scale: torch.Tensor  # [B·C] the channel's standard deviation (divides uncertainties)


def patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """[N, T] (T a multiple of p) -> [N, T/p, p]."""
    return x.reshape(x.shape[0], -1, p)


def whole_patches(values: torch.Tensor, times: torch.Tensor, observed: torch.Tensor, p: int):
    """values [B, C, T], times [B, T], observed [B, T] padded to whole patches of `p` samples: the padding is
    unobserved, zero and at the last timestamp (so it leaves the window's duration as it is)."""
    pad = (-values.shape[2]) % p
    if not pad:
        return values, times, observed
    return (nn.functional.pad(values, (0, pad)), torch.cat([times, times[:, -1:].expand(len(times), pad)], 1),
            nn.functional.pad(observed, (0, pad), value=False))


def random_crops(observed: torch.Tensor, n: int) -> torch.Tensor:
    """A random start token per window [B] for a crop of `n` of its L tokens (`observed` [B, L], L > n) that
    starts within its observed span, so padding after a short recording is not what a crop shows."""
    idx = torch.arange(observed.shape[1])
    first = torch.where(observed, idx, observed.shape[1]).amin(1)
    last = torch.where(observed, idx, -1).amax(1)
    lo = first.clamp_max(observed.shape[1] - n)
    hi = torch.maximum(lo, (last - n + 1).clamp(max=observed.shape[1] - n))
    return lo + (torch.rand(len(lo)) * (hi - lo + 1)).long().clamp_max(hi - lo)


def crop_starts(length: int, n: int) -> list[int]:
    """Start tokens of the crops of `n` tokens, about half a crop apart, that cover `length` tokens."""
    k = math.ceil(2 * length / n) - 1
    return sorted({round(i * (length - n) / (k - 1)) for i in range(k)})


class TimeEncoding(nn.Module):
    def __init__(self, dim: int, min_period: float, max_period: float):
        super().__init__()
        periods = torch.logspace(math.log10(min_period), math.log10(max_period), dim // 2)
        self.register_buffer("omega", 2 * math.pi / periods, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # [N, L] -> [N, L, dim]
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
        self.value = nn.Linear(cfg.patch, cfg.d_model)
        self.stats = nn.Linear(2, cfg.d_model)
        self.mask_token = nn.Parameter(torch.randn(cfg.d_model) * 0.02)
        self.time = TimeEncoding(cfg.d_model, cfg.min_period, cfg.max_period)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.reconstruct = nn.Linear(cfg.d_model, cfg.patch)
        self.classifier = None
        if cfg.n_classes:
            width = cfg.n_channels * cfg.channel_width
            self.classifier = nn.Sequential(nn.LayerNorm(width), nn.Dropout(cfg.dropout),
                                            nn.Linear(width, cfg.n_classes))

    def tokenize(self, values: torch.Tensor, times: torch.Tensor, observed: torch.Tensor) -> Tokens:
        """values [B, C, T], times [B, T] seconds, observed [B, T] -> Tokens. T is padded to whole patches
        (padding unobserved)."""
        p = self.cfg.patch
        values, times, observed = whole_patches(values, times, observed, p)
        c = values.shape[1]
        duration = (times[:, -1] - times[:, 0]).clamp_min(1e-12)
        tau = (times - times[:, :1]) / duration[:, None]
        x = self.channel_samples(values)
        obs = observed.repeat_interleave(c, 0)
        w = obs.to(x.dtype)
        n = w.sum(1).clamp_min(1)
        mean = (x * w).sum(1) / n
        sd = torch.sqrt((((x - mean[:, None]) * w) ** 2).sum(1) / n + 1e-4)
        z = (x - mean[:, None]) / sd[:, None] * w
        return Tokens(patches(z, p), patches(tau.repeat_interleave(c, 0), p)[:, :, 0], patches(obs, p).any(-1),
                      torch.stack([mean, sd.log()], -1), sd)

    def channel_samples(self, x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """[B, C, T] -> [B·C, T'] with T' the whole patches covering T (the rest filled with `fill`)."""
        x = nn.functional.pad(x, (0, (-x.shape[2]) % self.cfg.patch), value=fill)
        return x.reshape(x.shape[0] * x.shape[1], -1)

    def normalised_like(self, tok: Tokens, values: torch.Tensor) -> torch.Tensor:
        """Other values of the same windows (e.g. clean ones, when the inputs were noised) [B, C, T] as token
        values in `tok`'s instance-normalised units [B·C, L, P]."""
        x = (self.channel_samples(values) - tok.stats[:, :1]) / tok.scale[:, None]
        return patches(x, self.cfg.patch) * tok.observed[..., None]

    def encode(self, tok: Tokens, masked: torch.Tensor | None = None):
        """Token embeddings [B·C, L, d] and per-channel embeddings [B·C, 2d] (mean and spread; see `pooling`).
        `masked` [B·C, L]: positions whose value embedding is replaced by the MASK token."""
        x = self.value(tok.values)
        if masked is not None:
            x = torch.where(masked[..., None], self.mask_token.to(x.dtype), x)
        x = x + self.time(tok.times) + self.stats(tok.stats)[:, None, :]
        key_pad = ~tok.observed
        for layer in self.layers:
            x = layer(x, tok.times, key_pad)
        x = self.norm(x)
        w = tok.observed[..., None].to(x.dtype)
        n = w.sum(1).clamp_min(1)
        mean = (x * w).sum(1) / n
        if self.cfg.pooling == "mean":
            return x, mean
        sd = ((((x - mean[:, None]) * w) ** 2).sum(1) / n + 1e-6).sqrt()  # + 1e-6: a finite gradient at one token
        return x, torch.cat([mean, sd], -1)

    def forward(self, tok: Tokens, masked: torch.Tensor | None = None):
        """Reconstruction of every token's normalised values [B·C, L, P], token and channel embeddings."""
        x, pooled = self.encode(tok, masked)
        return self.reconstruct(x), x, pooled

    def embed(self, values, times, observed):
        """Window embeddings [B, C·2d]: the channels' embeddings side by side, windows longer than the context seen
        in crops (module docstring)."""
        p, n = self.cfg.patch, self.cfg.context
        values, times, observed = whole_patches(values, times, observed, p)
        b, c, length = values.shape[0], values.shape[1], values.shape[2] // p  # length in tokens
        if length <= n:
            return self._pooled(values, times, observed)[0].reshape(b, -1)
        if self.training:
            start = random_crops(observed.reshape(b, length, p).any(-1), n) * p
            idx = start[:, None] + torch.arange(n * p)
            crop = self._pooled(values.gather(2, idx[:, None, :].expand(b, c, n * p)), times.gather(1, idx),
                                observed.gather(1, idx))[0]
            return crop.reshape(b, -1)
        total = weight = 0
        for s in crop_starts(length, n):
            cut = slice(s * p, (s + n) * p)
            pooled, tokens = self._pooled(values[..., cut], times[:, cut], observed[:, cut])
            total, weight = total + pooled * tokens[:, None], weight + tokens[:, None]
        return (total / weight.clamp_min(1)).reshape(b, -1)

    def _pooled(self, values, times, observed):
        """Channel embeddings [B·C, 2d] (see `pooling`) and their observed tokens [B·C]. A crop may fall into a gap:
        its channels count no tokens, and are encoded as if observed (zeros) only so that no attention row is all
        padding."""
        tok = self.tokenize(values, times, observed)
        tokens = tok.observed.sum(1)
        tok = tok._replace(observed=tok.observed | (tokens == 0)[:, None])
        return self.encode(tok)[1], tokens

    def outputs(self, values, times, observed) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, K], embeddings [B, C·2d]) of a batch of windows."""
        if self.classifier is None:
            raise RuntimeError("this teacher has no classification head (fine-tune it first)")
        emb = self.embed(values, times, observed)
        return self.classifier(emb), emb

    def classify(self, values, times, observed):
        return self.outputs(values, times, observed)[0]

    def token_embeddings(self, values, times, observed):
        """Every token's embedding [B·C, L, d], in the context of the whole window."""
        return self.encode(self.tokenize(values, times, observed))[0]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def macs(self, n_channels: int, length: int) -> int:
        """Multiply-accumulates to embed and classify one window of `n_channels` × `length` samples."""
        from ..models.macs import macs_of

        class Window(nn.Module):
            def __init__(self, teacher):
                super().__init__()
                self.teacher = teacher

            def forward(self, values, times, observed):
                emb = self.teacher.embed(values, times, observed)
                return self.teacher.classifier(emb) if self.teacher.classifier is not None else emb

        return macs_of(Window(self), torch.zeros(1, n_channels, length),
                       torch.arange(length, dtype=torch.float32)[None], torch.ones(1, length, dtype=torch.bool))

    def with_classifier(self, n_channels: int, n_classes: int) -> "Teacher":
        """This encoder with a fresh classification head for windows of `n_channels` channels and `n_classes`."""
        model = Teacher(replace(self.cfg, n_channels=n_channels, n_classes=n_classes))
        encoder = {k: v for k, v in self.state_dict().items() if not k.startswith("classifier.")}
        missing, unexpected = model.load_state_dict(encoder, strict=False)
        assert not unexpected and all(k.startswith("classifier.") for k in missing)
        return model

    def with_backend(self, attention: str, block: int, topk: int) -> "Teacher":
        """This teacher with another attention backend: the backends share their weights, so it is the same model
        (exactly so for dense and scan, and for sparse when its blocks cover the context)."""
        model = Teacher(replace(self.cfg, attention=attention, block=block, topk=topk))
        model.load_state_dict(self.state_dict())
        return model

    def encoder_only(self) -> "Teacher":
        """This encoder without its classification head (to continue pretraining from a fine-tuned teacher)."""
        model = Teacher(replace(self.cfg, n_channels=0, n_classes=0))
        model.load_state_dict({k: v for k, v in self.state_dict().items() if not k.startswith("classifier.")})
        return model
