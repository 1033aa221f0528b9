"""The op boundary: opcheck, autograd, torch.compile, and what the backward keeps alive."""

from __future__ import annotations

import pytest
import torch

import gumbel_fused._ops.gumbel_softmax  # noqa: F401  (registers its torch.ops.gumbel_fused ops)
from gumbel_fused import gumbel_softmax

from ..helpers import as_tensors

OPS = torch.ops.gumbel_fused


def _fwd_samples():
    seed, tau = as_tensors(7, 0.6, "cpu")
    for shape in [(4, 10, 1), (2, 5, 3), (1, 1, 1)]:
        for hard in (False, True):
            yield torch.randn(shape, requires_grad=True), seed, tau, hard


def test_opcheck_forward():
    for args in _fwd_samples():
        torch.library.opcheck(OPS.gumbel_softmax_fwd.default, args)


def test_opcheck_backward():
    seed, tau = as_tensors(7, 0.6, "cpu")
    for recompute in (False, True):
        grad, saved = torch.randn(3, 6, 2), torch.randn(3, 6, 2).softmax(1)
        torch.library.opcheck(OPS.gumbel_softmax_bwd.default, (grad, saved, seed, tau, recompute))


@pytest.mark.parametrize("dim", [-1, 0])
def test_gradcheck_fp64(dim):
    # Soft mode only: hard mode's one-hot has a zero numerical derivative by design (its gradient
    # is the soft sample's, checked below).
    x = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    generator = torch.Generator()

    def sample(x):
        generator.manual_seed(42)  # the same noise for every perturbed input
        return gumbel_softmax(x, 0.7, dim=dim, generator=generator)

    assert torch.autograd.gradcheck(sample, (x,))


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


def test_compile_fullgraph_matches_eager():
    x = torch.randn(8, 3, 10, requires_grad=True)
    compiled = torch.compile(gumbel_softmax, fullgraph=True)
    for hard in (False, True):
        torch.manual_seed(9)
        want = gumbel_softmax(x, 0.5, hard, dim=1)
        (want * torch.arange(10.0)).sum().backward()
        want_grad, x.grad = x.grad, None
        torch.manual_seed(9)
        got = compiled(x, 0.5, hard, dim=1)
        (got * torch.arange(10.0)).sum().backward()
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(x.grad, want_grad)
        x.grad = None


def test_compile_does_not_recompile_when_tau_is_annealed():
    torch._dynamo.reset()
    x = torch.randn(4, 10)
    compiled = torch.compile(gumbel_softmax, fullgraph=True)
    from torch._dynamo.utils import counters

    counters.clear()
    for step in range(12):
        compiled(x, max(0.5, 1.0 * 0.9**step), True)
    # Dynamo compiles once with tau static, then once with tau dynamic, and never again.
    assert counters["stats"]["unique_graphs"] <= 2
