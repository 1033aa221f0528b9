"""``nn.Module`` wrapper of :func:`gumbel_fused.gumbel_softmax`, for models that anneal or learn tau."""

from __future__ import annotations

import torch
from torch import nn

from ._api._args import check_estimator, checked_temperature
from .functional import gumbel_softmax


class GumbelSoftmax(nn.Module):
    """Samples ``gumbel_softmax(logits, tau, hard, dim=dim)`` in training; in eval mode returns the
    deterministic ``softmax(logits / tau)`` (or its one-hot argmax when ``hard``), so evaluation does
    not consume random numbers. Either way a slice holding a NaN, or no finite logit, is NaN.

    ``tau`` is a number (set it from an annealing schedule between steps) or a one-element tensor; an
    ``nn.Parameter`` is registered, so the optimizer learns the temperature. ``estimator`` and
    ``rao_samples`` pick the hard sample's gradient, as in :func:`gumbel_fused.gumbel_softmax`.
    """

    def __init__(
        self,
        tau: float | torch.Tensor = 1.0,
        hard: bool = False,
        dim: int = -1,
        sample_in_eval: bool = False,
        estimator: str = "st",
        rao_samples: int = 10,
    ):
        super().__init__()
        checked = checked_temperature("GumbelSoftmax", "tau", tau, None)
        check_estimator("GumbelSoftmax", estimator, hard, rao_samples, tau)
        self.tau = tau if isinstance(tau, torch.Tensor) else checked
        self.hard, self.dim, self.sample_in_eval = bool(hard), dim, sample_in_eval
        self.estimator, self.rao_samples = estimator, rao_samples

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if self.training or self.sample_in_eval:
            return gumbel_softmax(
                logits, self.tau, self.hard, dim=self.dim, estimator=self.estimator, rao_samples=self.rao_samples
            )
        y = torch.softmax(logits / self.tau, dim=self.dim)
        if not self.hard:
            return y
        one_hot = torch.zeros_like(y).scatter_(self.dim, y.argmax(self.dim, keepdim=True), 1.0)
        return torch.where(y.isnan().any(self.dim, keepdim=True), float("nan"), one_hot)

    def extra_repr(self) -> str:
        text = f"tau={self.tau}, hard={self.hard}, dim={self.dim}"
        if self.estimator != "st":
            text += f", estimator={self.estimator!r}"
        if self.estimator == "gumbel_rao":
            text += f", rao_samples={self.rao_samples}"
        return text
