"""Counting multiply-accumulates of a forward pass: convolutions, linear layers and attention matmuls."""

from __future__ import annotations

import math

import torch
from torch import nn


def macs_of(model: nn.Module, *inputs) -> int:
    """MACs of `model(*inputs)`, counted with forward hooks. A module that computes attention weights declares
    it with an `attention_macs(input, output) -> int` method (the q·kᵀ and weights·v products)."""
    total = 0

    def conv(m, inp, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear(m, inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    def attention(m, inp, out):
        nonlocal total
        total += m.attention_macs(inp, out)

    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            hooks.append(m.register_forward_hook(conv))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear))
        elif hasattr(m, "attention_macs"):
            hooks.append(m.register_forward_hook(attention))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total
