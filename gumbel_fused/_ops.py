"""The op boundary: the ``gumbel_fused::gumbel_softmax_fwd`` / ``gumbel_softmax_bwd`` custom ops.

Each direction is one ``triton_op``: on CUDA it launches the Triton kernel through ``wrap_triton``,
so torch.compile sees the launch itself; anywhere else it calls a ``*_host`` op, whose CPU kernel is
the C++ extension (when it built) and whose default kernel is the pure-PyTorch reference.

Why two ops a direction: under torch.compile a ``triton_op`` is traced through its Python body with
fake tensors, so the body may only call traceable things, and the C++ kernel is not; wrapping it in
an op of its own, with a fake implementation, keeps it opaque and the whole graph traceable.

``register_autograd`` wires the backward op to the forward; the backward is itself an op, so it
stays traceable. Both ops work on the ``(outer, K, inner)`` view built by
:func:`gumbel_fused.gumbel_softmax` and return a contiguous tensor of that shape. ``seed`` (int64)
and ``tau`` (float64) are 0-dim tensors on the logits' device: a Python float argument would be
specialized by torch.compile, so annealing tau would recompile until the recompile limit.
"""

from __future__ import annotations

import torch
from torch.library import custom_op, triton_op, wrap_triton

from . import _cpu
from .reference import gumbel_softmax_bwd_ref, gumbel_softmax_fwd_ref

try:
    from . import _triton
except ImportError:  # no Triton on this platform: CUDA tensors are then unsupported, the rest works
    _triton = None


def _require_triton() -> None:
    if _triton is None:
        raise RuntimeError("gumbel_fused: CUDA tensors need Triton, which is not installed")


@triton_op("gumbel_fused::gumbel_softmax_fwd", mutates_args=())
def gumbel_softmax_fwd(logits: torch.Tensor, seed: torch.Tensor, tau: torch.Tensor, hard: bool) -> torch.Tensor:
    """Sample ``softmax((logits + g) / tau)`` over dim 1 (exact one-hot of its argmax when ``hard``)."""
    if logits.is_cuda:
        _require_triton()
        return _triton.gumbel_softmax_fwd(logits, seed, tau, hard, wrap=wrap_triton)
    return gumbel_softmax_fwd_host(logits, seed, tau, hard)


@triton_op("gumbel_fused::gumbel_softmax_bwd", mutates_args=())
def gumbel_softmax_bwd(
    grad: torch.Tensor, saved: torch.Tensor, seed: torch.Tensor, tau: torch.Tensor, recompute: bool
) -> torch.Tensor:
    """``y * (grad - sum(grad * y)) / tau`` over dim 1; y is ``saved``, or regenerated from it when
    ``recompute`` (then ``saved`` holds the logits)."""
    if grad.is_cuda:
        _require_triton()
        return _triton.gumbel_softmax_bwd(grad, saved, seed, tau, recompute, wrap=wrap_triton)
    return gumbel_softmax_bwd_host(grad, saved, seed, tau, recompute)


@custom_op("gumbel_fused::gumbel_softmax_fwd_host", mutates_args=())
def gumbel_softmax_fwd_host(logits: torch.Tensor, seed: torch.Tensor, tau: torch.Tensor, hard: bool) -> torch.Tensor:
    """Forward on a non-CUDA device: the reference, unless a device kernel is registered below."""
    return gumbel_softmax_fwd_ref(logits, seed, tau, hard)


@custom_op("gumbel_fused::gumbel_softmax_bwd_host", mutates_args=())
def gumbel_softmax_bwd_host(
    grad: torch.Tensor, saved: torch.Tensor, seed: torch.Tensor, tau: torch.Tensor, recompute: bool
) -> torch.Tensor:
    """Backward on a non-CUDA device: the reference, unless a device kernel is registered below."""
    return gumbel_softmax_bwd_ref(grad, saved, seed, tau, recompute)


# The CPU kernels serve both the host ops (reached under torch.compile, through the triton_op bodies)
# and the public ops directly, which saves eager CPU calls a nested dispatch (~15 us a direction,
# a quarter of the run time at the VAE's size).
@gumbel_softmax_fwd.register_kernel("cpu")
@gumbel_softmax_fwd_host.register_kernel("cpu")
def _gumbel_softmax_fwd_cpu(logits, seed, tau, hard):
    kernels = _cpu.load_cpu_kernels()
    if kernels is None:
        return gumbel_softmax_fwd_ref(logits, seed, tau, hard)
    return kernels.fwd(logits, seed, tau.item(), hard)  # a CPU scalar: no sync to speak of


@gumbel_softmax_bwd.register_kernel("cpu")
@gumbel_softmax_bwd_host.register_kernel("cpu")
def _gumbel_softmax_bwd_cpu(grad, saved, seed, tau, recompute):
    kernels = _cpu.load_cpu_kernels()
    if kernels is None:
        return gumbel_softmax_bwd_ref(grad, saved, seed, tau, recompute)
    return kernels.bwd(grad, saved, seed, tau.item(), recompute)


@gumbel_softmax_fwd_host.register_fake
def _(logits, seed, tau, hard):
    return logits.new_empty(logits.shape)


@gumbel_softmax_bwd_host.register_fake
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
