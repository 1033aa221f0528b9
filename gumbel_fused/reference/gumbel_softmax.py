"""Reference ``gumbel_softmax`` forward and backward on the op layout ``(outer, K, inner)``, softmax over K."""

from __future__ import annotations

import torch

from .rng import gumbel_from_uniform_ref, math_dtype, uniform_ref


def perturbed_logits_ref(logits: torch.Tensor, seed: torch.Tensor | int, tau: torch.Tensor | float) -> torch.Tensor:
    """``(logits + g) / tau`` for ``(outer, K, inner)`` logits, in the math dtype."""
    outer, n_cols, inner = logits.shape
    mdt = math_dtype(logits.dtype)
    g = gumbel_from_uniform_ref(uniform_ref(seed, outer, n_cols, inner, logits.device), mdt)
    return (logits.to(mdt) + g) / torch.as_tensor(tau, dtype=mdt, device=logits.device)


def one_hot_argmax(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact one-hot of the argmax of ``z`` over dim 1; rows where the soft sample ``y`` is NaN stay NaN.

    The argmax is taken on z, not on y = softmax(z), so that rounding in exp cannot create ties.
    """
    hard = torch.zeros_like(y).scatter_(1, z.argmax(dim=1, keepdim=True), 1.0)
    return torch.where(torch.isnan(y).any(dim=1, keepdim=True), float("nan"), hard)


def gumbel_softmax_fwd_ref(
    logits: torch.Tensor, seed: torch.Tensor, tau: torch.Tensor | float, hard: bool
) -> torch.Tensor:
    """Forward of the op on ``(outer, K, inner)`` logits; returns a contiguous tensor of the same dtype."""
    z = perturbed_logits_ref(logits, seed, tau)
    y = torch.softmax(z, dim=1)
    if hard:
        y = one_hot_argmax(z, y)
    return y.to(logits.dtype).contiguous()


def gumbel_softmax_bwd_ref(
    grad: torch.Tensor, saved: torch.Tensor, seed: torch.Tensor, tau: torch.Tensor | float, recompute: bool
) -> torch.Tensor:
    """Backward of the op: ``y * (dy - sum(dy * y)) / tau`` over dim 1.

    ``saved`` is the logits when ``recompute`` (hard mode: y is regenerated from the seed) and the
    soft output y otherwise.
    """
    mdt = math_dtype(saved.dtype)
    y = torch.softmax(perturbed_logits_ref(saved, seed, tau), dim=1) if recompute else saved.to(mdt)
    dy = grad.to(mdt)
    dx = y * (dy - (dy * y).sum(dim=1, keepdim=True)) / torch.as_tensor(tau, dtype=mdt, device=y.device)
    return dx.to(saved.dtype).contiguous()
