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

from ..reference.gumbel_softmax import gumbel_softmax_bwd_ref, gumbel_softmax_fwd_ref
from ._dispatch import LIBRARY, define_op

# Forward: sample softmax((logits + g) / tau) over dim 1 (the exact one-hot of its argmax when hard).
gumbel_softmax_fwd = define_op(
    "gumbel_softmax_fwd(Tensor logits, Tensor seed, Tensor tau, bool hard) -> Tensor",
    gumbel_softmax_fwd_ref,
    cpp="fwd",
    triton="gumbel_softmax.gumbel_softmax_fwd",
)
# Backward: y * (grad - sum(grad * y)) / tau over dim 1, with y = saved, or regenerated from
# saved = the logits when recompute.
gumbel_softmax_bwd = define_op(
    "gumbel_softmax_bwd(Tensor grad, Tensor saved, Tensor seed, Tensor tau, bool recompute) -> Tensor",
    gumbel_softmax_bwd_ref,
    cpp="bwd",
    triton="gumbel_softmax.gumbel_softmax_bwd",
)


@torch.library.register_fake("gumbel_fused::gumbel_softmax_fwd", lib=LIBRARY)
def _(logits, seed, tau, hard):
    return logits.new_empty(logits.shape)


@torch.library.register_fake("gumbel_fused::gumbel_softmax_bwd", lib=LIBRARY)
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


torch.library.register_autograd(
    "gumbel_fused::gumbel_softmax_fwd", _backward, setup_context=_setup_context, lib=LIBRARY
)
