"""A fine-tuned teacher made of several runs of one pretrained encoder, answering with their averaged probabilities.

Fine-tuning runs once per time shift (finetune.py). Choosing one run by a few validation windows was the teacher's
largest source of spread: on ACSF1 seed 1, 20 validation windows chose the run that tests 0.76 over one that tests
0.85, and the mean of the two runs' class probabilities tests 0.87 (ACSF1's three seeds: 0.873 against 0.850 for the
chosen run; docs/teacher-and-distillation.md). The runs leave the pretrained weights in different directions
(averaging their weights instead tests 0.54 there), so the outputs are averaged, not the weights. The teacher costs
one encoder pass per run, and is that many times larger, for the student to learn from.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .model import Teacher


def mean_probabilities(logits) -> torch.Tensor:
    """Logits whose softmax is the mean of the class probabilities of several logits [B, K] of the same windows."""
    probs = torch.stack([torch.log_softmax(x, -1) for x in logits])
    return torch.logsumexp(probs, 0) - math.log(len(logits))


class Ensemble(nn.Module):
    """Fine-tuned teachers of one configuration and classes: logits are the log of their mean class probabilities,
    an embedding is their embeddings side by side."""

    def __init__(self, members: list[Teacher]):
        super().__init__()
        if not members or len({m.cfg for m in members}) != 1:
            raise ValueError("an ensemble needs at least one member, all of one configuration")
        self.members = nn.ModuleList(members)

    @property
    def cfg(self):
        return self.members[0].cfg

    def outputs(self, values, times, observed) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, K], embeddings [B, runs·C·2d]) of a batch of windows."""
        logits, emb = zip(*(m.outputs(values, times, observed) for m in self.members))
        return mean_probabilities(logits), torch.cat(emb, -1)

    def classify(self, values, times, observed):
        return self.outputs(values, times, observed)[0]

    def embed(self, values, times, observed):
        return torch.cat([m.embed(values, times, observed) for m in self.members], -1)

    def token_embeddings(self, values, times, observed):
        return torch.cat([m.token_embeddings(values, times, observed) for m in self.members], -1)

    def parameter_count(self) -> int:
        return sum(m.parameter_count() for m in self.members)

    def macs(self, n_channels: int, length: int) -> int:
        return sum(m.macs(n_channels, length) for m in self.members)

    def encoder_only(self) -> Teacher:
        """The first run's encoder without its head (to pretrain on from a fine-tuned teacher)."""
        return self.members[0].encoder_only()
