"""The op boundary: ``gumbel_fused::gumbel_softmax_fwd`` / ``gumbel_softmax_bwd`` custom ops.

Each op has one schema, a fake (meta) implementation for torch.compile, and one kernel per device:
Triton for CUDA (``triton_op`` + ``wrap_triton``, so Inductor sees through it), C++ for CPU when the
extension is available, and the pure-PyTorch reference everywhere else. ``register_autograd`` wires
the backward op to the forward; the backward is itself an op, so it stays traceable.

Both ops work on the ``(outer, K, inner)`` view built by :func:`gumbel_fused.gumbel_softmax` and
return a contiguous tensor of that shape.
"""

from __future__ import annotations

import torch
from torch.library import triton_op, wrap_triton

from . import _cpu, _triton
from .reference import gumbel_softmax_bwd_ref, gumbel_softmax_fwd_ref


@triton_op("gumbel_fused::gumbel_softmax_fwd", mutates_args=())
def gumbel_softmax_fwd(logits: torch.Tensor, seed: torch.Tensor, tau: float, hard: bool) -> torch.Tensor:
    """Sample ``softmax((logits + g) / tau)`` over dim 1 (exact one-hot of its argmax when ``hard``)."""
    if logits.is_cuda:
        return _triton.gumbel_softmax_fwd(logits, seed, tau, hard, wrap=wrap_triton)
    return gumbel_softmax_fwd_ref(logits, seed, tau, hard)


@triton_op("gumbel_fused::gumbel_softmax_bwd", mutates_args=())
def gumbel_softmax_bwd(
    grad: torch.Tensor, saved: torch.Tensor, seed: torch.Tensor, tau: float, recompute: bool
) -> torch.Tensor:
    """``y * (grad - sum(grad * y)) / tau`` over dim 1; y is ``saved``, or regenerated from it when
    ``recompute`` (then ``saved`` holds the logits)."""
    if grad.is_cuda:
        return _triton.gumbel_softmax_bwd(grad, saved, seed, tau, recompute, wrap=wrap_triton)
    return gumbel_softmax_bwd_ref(grad, saved, seed, tau, recompute)


@gumbel_softmax_fwd.register_kernel("cpu")
def _gumbel_softmax_fwd_cpu(logits, seed, tau, hard):
    kernels = _cpu.load_cpu_kernels()
    if kernels is None:
        return gumbel_softmax_fwd_ref(logits, seed, tau, hard)
    return kernels.fwd(logits, seed, tau, hard)


@gumbel_softmax_bwd.register_kernel("cpu")
def _gumbel_softmax_bwd_cpu(grad, saved, seed, tau, recompute):
    kernels = _cpu.load_cpu_kernels()
    if kernels is None:
        return gumbel_softmax_bwd_ref(grad, saved, seed, tau, recompute)
    return kernels.bwd(grad, saved, seed, tau, recompute)


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
    ctx.save_for_backward(logits if hard else output, seed)
    ctx.tau, ctx.recompute = tau, hard


def _backward(ctx, grad):
    saved, seed = ctx.saved_tensors
    return gumbel_softmax_bwd(grad, saved, seed, ctx.tau, ctx.recompute), None, None, None


gumbel_softmax_fwd.register_autograd(_backward, setup_context=_setup_context)
