"""``nn.Module`` wrapper of :func:`gumbel_fused.gumbel_softmax`, for models that anneal tau."""

from __future__ import annotations

import torch
from torch import nn

from ._api._args import check_temperature
from .functional import gumbel_softmax


class GumbelSoftmax(nn.Module):
    """Samples ``gumbel_softmax(logits, tau, hard, dim=dim)`` in training; in eval mode returns the
    deterministic ``softmax(logits / tau)`` (or its one-hot argmax when ``hard``), so evaluation does
    not consume random numbers.

    ``tau`` is a plain attribute: set it from an annealing schedule between steps.
    """

    def __init__(self, tau: float = 1.0, hard: bool = False, dim: int = -1, sample_in_eval: bool = False):
        super().__init__()
        check_temperature("GumbelSoftmax", "tau", tau)
        self.tau, self.hard, self.dim, self.sample_in_eval = float(tau), bool(hard), dim, sample_in_eval

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if self.training or self.sample_in_eval:
            return gumbel_softmax(logits, self.tau, self.hard, dim=self.dim)
        y = torch.softmax(logits / self.tau, dim=self.dim)
        if self.hard:
            return torch.zeros_like(y).scatter_(self.dim, y.argmax(self.dim, keepdim=True), 1.0)
        return y

    def extra_repr(self) -> str:
        return f"tau={self.tau}, hard={self.hard}, dim={self.dim}"
