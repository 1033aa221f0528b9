"""The ``gumbel_fused::gumbel_softmax_fwd`` / ``gumbel_softmax_bwd`` ops, their fakes and their autograd.

Both work on the ``(outer, K, inner)`` view built by :func:`gumbel_fused.gumbel_softmax`, softmax over
dim 1, and return a contiguous tensor of that shape. ``seed`` (int64) and ``tau`` (float64) are 0-dim
tensors on the logits' device: a Python float argument would be specialized by torch.compile, so
annealing tau would recompile until the recompile limit.

``register_autograd`` wires the backward op to the forward; the backward is itself an op, so it stays
traceable.
"""

from __future__ import annotations

import torch
from torch.library import custom_op

from ..reference.gumbel_softmax import gumbel_softmax_bwd_ref, gumbel_softmax_fwd_ref
from ._dispatch import register_kernels


@custom_op("gumbel_fused::gumbel_softmax_fwd", mutates_args=())
def gumbel_softmax_fwd(logits: torch.Tensor, seed: torch.Tensor, tau: torch.Tensor, hard: bool) -> torch.Tensor:
    """Sample ``softmax((logits + g) / tau)`` over dim 1 (exact one-hot of its argmax when ``hard``)."""
    return gumbel_softmax_fwd_ref(logits, seed, tau, hard)


@custom_op("gumbel_fused::gumbel_softmax_bwd", mutates_args=())
def gumbel_softmax_bwd(
    grad: torch.Tensor, saved: torch.Tensor, seed: torch.Tensor, tau: torch.Tensor, recompute: bool
) -> torch.Tensor:
    """``y * (grad - sum(grad * y)) / tau`` over dim 1; y is ``saved``, or regenerated from it when
    ``recompute`` (then ``saved`` holds the logits)."""
    return gumbel_softmax_bwd_ref(grad, saved, seed, tau, recompute)


register_kernels(gumbel_softmax_fwd, gumbel_softmax_fwd_ref, cpp="fwd", triton="gumbel_softmax.gumbel_softmax_fwd")
register_kernels(gumbel_softmax_bwd, gumbel_softmax_bwd_ref, cpp="bwd", triton="gumbel_softmax.gumbel_softmax_bwd")


@gumbel_softmax_fwd.register_fake
def _(logits, seed, tau, hard):
    return logits.new_empty(logits.shape)


@gumbel_softmax_bwd.register_fake
def _(grad, saved, seed, tau, recompute):
    return saved.new_empty(saved.shape)


def _setup_context(ctx, inputs, output):
    logits, seed, tau, hard = inputs
    # Soft mode: y is the output, so keep it. Hard mode: the output is a one-hot, and keeping y too
    # would be a second full-size tensor; regenerate y from (logits, seed) in the backward instead.
    ctx.save_for_backward(logits if hard else output, seed, tau)
    ctx.recompute = hard


def _backward(ctx, grad):
    saved, seed, tau = ctx.saved_tensors
    return gumbel_softmax_bwd(grad, saved, seed, tau, ctx.recompute), None, None, None


gumbel_softmax_fwd.register_autograd(_backward, setup_context=_setup_context)
