"""``nn.Module`` wrapper of :func:`gumbel_fused.gumbel_softmax`, for models that anneal or learn tau."""

from __future__ import annotations

import torch
from torch import nn

from ._api._args import checked_temperature
from .functional import gumbel_softmax


class GumbelSoftmax(nn.Module):
    """Samples ``gumbel_softmax(logits, tau, hard, dim=dim)`` in training; in eval mode returns the
    deterministic ``softmax(logits / tau)`` (or its one-hot argmax when ``hard``), so evaluation does
    not consume random numbers. Either way a slice holding a NaN, or no finite logit, is NaN.

    ``tau`` is a number (set it from an annealing schedule between steps) or a one-element tensor; an
    ``nn.Parameter`` is registered, so the optimizer learns the temperature.
    """

    def __init__(
        self, tau: float | torch.Tensor = 1.0, hard: bool = False, dim: int = -1, sample_in_eval: bool = False
    ):
        super().__init__()
        checked = checked_temperature("GumbelSoftmax", "tau", tau, None)
        self.tau = tau if isinstance(tau, torch.Tensor) else checked
        self.hard, self.dim, self.sample_in_eval = bool(hard), dim, sample_in_eval

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if self.training or self.sample_in_eval:
            return gumbel_softmax(logits, self.tau, self.hard, dim=self.dim)
        y = torch.softmax(logits / self.tau, dim=self.dim)
        if not self.hard:
            return y
        one_hot = torch.zeros_like(y).scatter_(self.dim, y.argmax(self.dim, keepdim=True), 1.0)
        return torch.where(y.isnan().any(self.dim, keepdim=True), float("nan"), one_hot)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, hard={self.hard}, dim={self.dim}"
