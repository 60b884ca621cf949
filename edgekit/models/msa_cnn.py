"""MSA-CNN (Goerttler et al. 2025, "MSA-CNN: A Lightweight Multi-Scale CNN with Attention for Sleep Stage
Classification"), the edgekit student.

Input `[B, C, T]` (normalised windows) is viewed as a one-plane image `[B, 1, C, T]`; every temporal convolution is
a Conv2d with a 1×k kernel, which converts to a plain CONV_2D in TFLite (it has no 1-D convolution).

  multi-scale module   S scales s = 1, 2, 4, ... Branch i average-pools time by s_i, applies a temporal 1×k
                       convolution with its own share of the filters (the filter budget is split across scales,
                       not repeated), ReLU, then max-pools by P / s_i with P = 2^(S-1). The pre- and post-
                       convolution pools are complementary (together always P), so every branch ends at T // P
                       steps while its filters see the signal at their own resolution: no filter is spent on a
                       frequency band another scale already covers, and no dense convolution is needed to align
                       the branches. A strided 1×k' convolution then integrates the scales.
  spatial convolution  one global C×1 convolution mixes all channels into `out_spatial` features per time step
                       (temporal and spatial feature extraction are kept separate, as in the paper).
  temporal context     a linear embedding, fixed sinusoidal positions, and L post-norm Transformer encoder
                       layers (multi-head self-attention + feed-forward of twice the embedding) over the
                       T // P // k' time steps. Attention is written with Linear/matmul/softmax because
                       nn.MultiheadAttention exports wrongly to TFLite.
  classifier           mean over time, then a linear layer (logits; softmax is applied by the runtime).

One size knob, `width` w, sets every layer: 8w branch filters shared by the scales, 4w scale-integration
filters, 8w spatial features, embedding 4w (rounded; w moves in quarter steps so that a parameter budget is
used up to a few percent). The paper's "small" configuration is w = 4 (~10k parameters).

Options from the paper: `input_scaling` adds its learned per-channel gain and bias (2C parameters; edgekit
already normalises channels in preprocessing, so it is off by default); for univariate input the spatial
convolution has nothing to mix and becomes a temporal 1×`univariate_kernel` convolution (the paper's 1×5).

Departures from the paper, and why:
- batch normalisation after every convolution (`batch_norm`): the paper trains on tens of thousands of EEG
  epochs; on the tens to hundreds of windows of a typical sensor dataset the plain network trains slowly and
  unevenly. In eval mode it is a per-channel affine map that the exporters fold into the convolution before it.
- the temporal kernel follows the window length (`default_kernel`) instead of the paper's 15 samples for 100 Hz
  EEG; the number of scales and the scale-integration kernel shrink for short windows so that at least
  MIN_TOKENS time steps reach the attention.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from edgekit_runtime.errors import UserError

from .macs import macs_of

MIN_TOKENS = 4
MAX_WIDTH = 160  # about 10M parameters: far past a board's student (the teacher is the large model)
MAX_BUDGET = 10_000_000


def default_kernel(length: int) -> int:
    """The branch convolution's kernel for a window of `length` samples: about a tenth of the window, odd, between
    3 and 15 samples (the paper's 15 at 3000 samples; a kernel wider than the signal only sees padding)."""
    return int(min(15, max(3, (length // 10) | 1)))


@dataclass(frozen=True)
class MSACNNConfig:
    n_channels: int
    n_classes: int
    length: int
    width: float = 4
    scales: int = 4
    kernel: int = 15
    scale_kernel: int = 5
    heads: int = 2
    layers: int = 1
    dropout: float = 0.1
    batch_norm: bool = True
    input_scaling: bool = False
    univariate_kernel: int = 1

    def __post_init__(self):
        if not 0.25 <= self.width <= MAX_WIDTH:  # also refuses NaN
            raise ValueError(f"width must be between 0.25 and {MAX_WIDTH}, got {self.width}")
        if min(self.scales, self.scale_kernel, self.kernel, self.univariate_kernel) < 1:
            raise ValueError("scales, kernel, scale_kernel and univariate_kernel must be positive")
        if self.kernel % 2 == 0 or self.univariate_kernel % 2 == 0:
            raise ValueError("kernel and univariate_kernel must be odd, so that a window keeps its length")
        if self.tokens < 1:
            raise ValueError(f"window length {self.length} is too short for {self.scales} scales and a "
                             f"scale kernel of {self.scale_kernel}")

    @property
    def pool(self) -> int:
        return 2 ** (self.scales - 1)

    @property
    def tokens(self) -> int:
        return self.length // self.pool // self.scale_kernel

    def channels(self, multiple: int) -> int:
        """`multiple` × width channels, rounded half up, at least one."""
        return max(1, int(multiple * self.width + 0.5))

    @property
    def embed(self) -> int:
        return self.heads * max(1, int(4 * self.width / self.heads + 0.5))  # divisible by the heads

    def filters_per_scale(self) -> list[int]:
        total = max(self.scales, self.channels(8))  # every scale keeps a filter
        return [total // self.scales + (i < total % self.scales) for i in range(self.scales)]

    @classmethod
    def build(cls, n_channels: int, n_classes: int, length: int, **options) -> "MSACNNConfig":
        """A configuration adapted to the window length: for short windows first a smaller scale kernel, then
        fewer scales, until at least MIN_TOKENS time steps reach the attention (or nothing can be shrunk)."""
        scales, kernel = options.pop("scales", 4), options.pop("scale_kernel", 5)
        options.setdefault("kernel", default_kernel(length))
        while length // 2 ** (scales - 1) // kernel < MIN_TOKENS and (kernel > 1 or scales > 1):
            if kernel > 1:
                kernel = max(1, kernel - 2)
            else:
                scales -= 1
        return cls(n_channels, n_classes, length, scales=scales, scale_kernel=kernel, **options)

    def to_dict(self) -> dict:
        return asdict(self)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.scale = self.head_dim**-0.5

    def attention_macs(self, inp, out) -> int:
        b, length, dim = inp[0].shape
        return 2 * b * length * length * dim  # q·kᵀ and weights·v

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, D]
        length, dim = x.shape[1], x.shape[2]
        qkv = self.qkv(x).reshape(-1, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, H, L, hd]
        attn = torch.softmax(torch.matmul(q * self.scale, k.transpose(-2, -1)), dim=-1)
        out = torch.matmul(self.drop(attn), v).transpose(1, 2).reshape(-1, length, dim)
        return self.proj(out)


class EncoderLayer(nn.Module):
    """Post-norm Transformer encoder layer (as torch's default nn.TransformerEncoderLayer), ReLU feed-forward."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.attn = SelfAttention(dim, heads, dropout)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = self.norm1(x + self.drop(self.attn(x)))
        return self.norm2(x + self.drop(self.ff(x)))


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class ChannelScaling(nn.Module):
    """The paper's input scaling layer: a learned gain and bias per channel of `[B, C, T]`."""

    def __init__(self, channels: int):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1))

    def forward(self, x):
        return x * self.gain + self.bias


class MSACNN(nn.Module):
    def __init__(self, cfg: MSACNNConfig):
        super().__init__()
        self.cfg = cfg
        k = cfg.kernel
        branch, integrated, spatial = sum(cfg.filters_per_scale()), cfg.channels(4), cfg.channels(8)

        def norm(n):
            return nn.BatchNorm2d(n) if cfg.batch_norm else nn.Identity()

        self.scaling = ChannelScaling(cfg.n_channels) if cfg.input_scaling else nn.Identity()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.AvgPool2d((1, 2**i)) if i else nn.Identity(),
                nn.Conv2d(1, n, (1, k), padding=(0, k // 2), bias=not cfg.batch_norm),
                norm(n),
                nn.ReLU(),
                nn.MaxPool2d((1, cfg.pool // 2**i)) if cfg.pool // 2**i > 1 else nn.Identity(),
                nn.Dropout(cfg.dropout),
            )
            for i, n in enumerate(cfg.filters_per_scale())
        )
        self.integrate = nn.Sequential(
            nn.Conv2d(branch, integrated, (1, cfg.scale_kernel), stride=(1, cfg.scale_kernel), bias=not cfg.batch_norm),
            norm(integrated), nn.ReLU(),
            nn.Dropout(cfg.dropout))
        # multivariate: one global C×1 convolution mixes the channels; univariate: a temporal 1×u convolution
        sk = (cfg.n_channels, 1) if cfg.n_channels > 1 else (1, cfg.univariate_kernel)
        self.spatial = nn.Sequential(nn.Conv2d(integrated, spatial, sk, padding=(0, sk[1] // 2),
                                               bias=not cfg.batch_norm),
                                     norm(spatial), nn.ReLU())
        self.embedding = nn.Linear(spatial, cfg.embed)
        self.register_buffer("positions", sinusoidal_positions(cfg.tokens, cfg.embed), persistent=False)
        self.encoder = nn.Sequential(*(EncoderLayer(cfg.embed, cfg.heads, cfg.dropout) for _ in range(cfg.layers)))
        self.classifier = nn.Linear(cfg.embed, cfg.n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features `[B, embed]` of windows `[B, C, T]`."""
        x = self.scaling(x).unsqueeze(1)
        length = self.cfg.length // self.cfg.pool
        x = torch.cat([b(x)[..., :length] for b in self.branches], dim=1)  # [B, 8w, C, T // P]
        x = self.spatial(self.integrate(x))  # [B, 8w, 1, tokens]
        x = self.embedding(x.squeeze(2).transpose(1, 2)) + self.positions  # [B, tokens, embed]
        return self.encoder(x).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def fold_batch_norm(model: MSACNN) -> MSACNN:
    """The same function (in eval mode) without batch normalisation: each norm's running statistics and affine
    map folded into the weight and a new bias of the convolution before it, as the exporters fold them. QAT
    starts from this, so that the weights it rounds are the weights the int8 file holds."""
    if not model.cfg.batch_norm:
        return model
    folded = MSACNN(replace(model.cfg, batch_norm=False))
    state = {k: v for k, v in model.state_dict().items() if k in folded.state_dict()}
    for name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i, norm in enumerate(seq):
            if isinstance(norm, nn.BatchNorm2d):
                conv = f"{name}.{i - 1}"
                gain = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
                state[f"{conv}.weight"] = seq[i - 1].weight.detach() * gain[:, None, None, None]
                state[f"{conv}.bias"] = norm.bias.detach() - norm.running_mean * gain
    folded.load_state_dict(state)
    return folded.eval()


def equalize_activations(model: MSACNN, windows: torch.Tensor) -> MSACNN:
    """The same function (eval mode, batch norm folded) with every input channel of the scale-integration and
    spatial convolutions spanning the same range on `windows`, for int8 export.

    int8 quantises those inputs per tensor: one range for all channels. A multi-scale branch that sees the rare
    spikes of a heavy-tailed signal (ACSF1's power readings) then sets a range in which the quiet branches get a
    handful of steps (ACSF1: channel maxima 1.2 to 17.5; argmax agreement 0.94). ReLU and max pooling commute
    with a positive scale, so each channel can be divided by its range where it is produced and the weights that
    read it multiplied back (cross-layer equalisation, Nagel et al. 2019): the float function is unchanged and
    each channel uses the whole int8 range. The weights stay per-output-channel int8, with their own ranges.
    """
    model = copy.deepcopy(fold_batch_norm(model)).eval()
    boundaries = [([b[1] for b in model.branches], model.integrate[0]), ([model.integrate[0]], model.spatial[0])]
    for producers, consumer in boundaries:
        seen = []
        hook = consumer.register_forward_pre_hook(lambda mod, args: seen.append(args[0].amax(dim=(0, 2, 3))))
        with torch.no_grad():
            model(windows)
        hook.remove()
        ranges = seen[0]
        scale = torch.where(ranges > 1e-6 * ranges.max(), ranges / ranges.max(), 1.0)  # silent channels: as they are
        with torch.no_grad():
            for conv, s in zip(producers, scale.split([p.out_channels for p in producers])):
                conv.weight /= s[:, None, None, None]
                conv.bias /= s
            consumer.weight *= scale[None, :, None, None]
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: MSACNN) -> int:
    """Multiply-accumulates for one window."""
    return macs_of(model, torch.zeros(1, model.cfg.n_channels, model.cfg.length))


def parse_budget(text: str) -> int:
    """'10k' -> 10000, '1.5M' -> 1500000, '8000' -> 8000."""
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        raise UserError(f"cannot read parameter budget {text!r}; write e.g. 3000, 10k or 1.5M") from None
    if not 0 < value <= MAX_BUDGET:  # also refuses NaN and infinity
        raise UserError(f"parameter budget must be positive and at most {MAX_BUDGET / 1e6:g}M, got {text!r}")
    return int(value)


def config_for_budget(n_channels: int, n_classes: int, length: int, budget: int, **overrides) -> MSACNNConfig:
    """The widest configuration (width in quarter steps) whose parameter count fits `budget`: the count grows with
    the width, so doubling and then bisecting finds it in a few builds."""
    def size(quarters: int):
        cfg = MSACNNConfig.build(n_channels, n_classes, length, width=quarters / 4, **overrides)
        return cfg, count_parameters(MSACNN(cfg))

    _, smallest = size(1)
    if smallest > budget:
        raise UserError(f"a budget of {budget:,} parameters is too small: the smallest MSA-CNN for "
                        f"{n_channels} channels, {n_classes} classes and {length} samples has {smallest:,}")
    lo, hi = 1, 2  # lo fits; hi is tried next
    while hi <= 4 * MAX_WIDTH and size(hi)[1] <= budget:
        lo, hi = hi, 2 * hi
    hi = min(hi, 4 * MAX_WIDTH + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if size(mid)[1] <= budget:
            lo = mid
        else:
            hi = mid
    return size(lo)[0]
