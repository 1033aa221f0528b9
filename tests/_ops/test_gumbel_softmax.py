"""The gumbel_softmax ops: opcheck, straight-through, torch.compile, and what the backward keeps alive."""

from __future__ import annotations

import pytest
import torch

import gumbel_fused._ops.gumbel_softmax  # noqa: F401  (registers its torch.ops.gumbel_fused ops)
from gumbel_fused import gumbel_softmax

from ..helpers import as_tensors

OPS = torch.ops.gumbel_fused


def _fwd_samples():
    # (outer, K, inner) views as the kernels see them (dim 1, the default), and caller-shaped logits with
    # the categories elsewhere, which the op views itself; tau also as a tensor that requires grad.
    seed, tau = as_tensors(7, 0.6, "cpu")
    learnable_tau = tau.clone().requires_grad_()
    for shape, dim in [((4, 10, 1), 1), ((2, 5, 3), 1), ((1, 1, 1), 1), ((6, 9), 1), ((5, 2, 3, 4), 2), ((7,), 0)]:
        for hard in (False, True):
            yield torch.randn(shape, requires_grad=True), seed, tau, hard, dim
            yield torch.randn(shape), seed, learnable_tau, hard, dim


def test_opcheck_forward():
    for args in _fwd_samples():
        torch.library.opcheck(OPS.gumbel_softmax_fwd.default, args)


def test_opcheck_backward():
    seed, tau = as_tensors(7, 0.6, "cpu")
    for recompute in (False, True):
        for shape, dim in [((3, 6, 2), 1), ((4, 6), 0)]:
            grad, saved = torch.randn(shape), torch.randn(shape).softmax(dim)
            torch.library.opcheck(OPS.gumbel_softmax_bwd.default, (grad, saved, seed, tau, recompute, dim))


def test_hard_and_soft_give_the_same_gradient():
    # Straight-through: hard mode's gradient is the soft sample's (torch's own test asserts this).
    x = torch.randn(16, 9, requires_grad=True)
    weight = torch.randn(16, 9)
    grads = []
    for hard in (False, True):
        torch.manual_seed(123)
        (gumbel_softmax(x, 0.5, hard) * weight).sum().backward()
        grads.append(x.grad.clone())
        x.grad = None
    torch.testing.assert_close(grads[0], grads[1])


def test_hard_backward_saves_no_full_size_tensor_besides_logits():
    x = torch.randn(64, 1000, requires_grad=True)
    logits = x * 1.0  # a non-leaf, as in a model
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = gumbel_softmax(logits, 0.5, hard=True)
    full_size = [t for t in saved if t.numel() == logits.numel()]
    assert len(full_size) == 1 and full_size[0].data_ptr() == logits.data_ptr()
    assert all(t.numel() == 1 for t in saved if t.numel() != logits.numel())  # seed and tau
    y.sum().backward()


@pytest.mark.parametrize("dim", [1, -1])
def test_compile_fullgraph_matches_eager(dim):
    # The same seed (Inductor leaves randint.generator to aten), samples and gradients, tau's included.
    x = torch.randn(8, 3, 10, requires_grad=True)
    weight = torch.randn(8, 3, 10)
    tau = torch.tensor(0.5, requires_grad=True)
    compiled = torch.compile(gumbel_softmax, fullgraph=True)
    for hard in (False, True):
        results = []
        for fn in (gumbel_softmax, compiled):
            torch.manual_seed(9)
            y = fn(x, tau, hard, dim=dim)
            (y * weight).sum().backward()
            results.append((y, x.grad, tau.grad))
            x.grad = tau.grad = None
        torch.testing.assert_close(results[1], results[0])


def test_compile_does_not_recompile_when_tau_is_annealed():
    from torch._dynamo.utils import counters

    x = torch.randn(4, 10)
    for make_tau in (float, torch.tensor):
        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(gumbel_softmax, fullgraph=True)
        for step in range(12):
            compiled(x, make_tau(max(0.5, 1.0 * 0.9**step)), True)
        # A float: Dynamo compiles once with tau static, then once with tau dynamic, and never again.
        # A tensor: one graph.
        assert counters["stats"]["unique_graphs"] <= (2 if make_tau is float else 1)


@pytest.mark.parametrize("tau", [-1.0, 0.0, float("nan"), 1e39])
def test_compiled_code_checks_tau_on_the_cpu_at_run_time(tau):
    # A compiled graph cannot compare tau without a guard; the CPU kernel reads it for free and raises.
    torch._dynamo.reset()
    compiled = torch.compile(gumbel_softmax, fullgraph=True)
    compiled(torch.randn(4, 10), 0.5)
    for value in (tau, torch.tensor(tau)):
        with pytest.raises(ValueError, match="argument 'tau' must be"):
            compiled(torch.randn(4, 10), value)
