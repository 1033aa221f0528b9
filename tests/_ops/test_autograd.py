"""Autograd of ``gumbel_softmax`` in every mode: reverse to any order, forward mode, ``torch.func``, vmap.

The oracle is autograd through the pure-PyTorch reference fed the same seed (its soft sample is plain
differentiable torch ops), and finite differences for forward mode. Hard mode is straight-through: each of
its derivatives must equal the soft sample's for the same noise.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.autograd import forward_ad

from gumbel_fused import draw_seed, gumbel_softmax
from gumbel_fused.reference import gumbel_softmax_fwd_ref

SEED = 42
TAU = 0.7


def fixed_noise(hard: bool = False, dim: int = -1):
    """``sample(x, tau)``: gumbel_softmax with the same noise on every call (a generator reseeded each time)."""
    generator = torch.Generator()

    def sample(x, tau=TAU):
        generator.manual_seed(SEED)
        return gumbel_softmax(x, tau, hard, dim=dim, generator=generator)

    return sample


def reference(dim: int = -1):
    """``sample(x, tau)``: the reference's soft sample with the seed ``fixed_noise`` draws, differentiably."""
    seed = draw_seed(torch.device("cpu"), torch.Generator().manual_seed(SEED))

    def sample(x, tau=TAU):
        d = dim % x.dim()
        x3 = x.reshape(math.prod(x.shape[:d]), x.shape[d], math.prod(x.shape[d + 1 :]))
        return gumbel_softmax_fwd_ref(x3, seed, tau, False).view(x.shape)

    return sample


def logits(*shape, requires_grad=False):
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    return x.requires_grad_(requires_grad)


def weights(*shape):
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(8))


@pytest.mark.parametrize("dim", [-1, 0])
def test_gradcheck_and_gradgradcheck_soft_in_logits_and_tau(dim):
    x = logits(3, 5, requires_grad=True)
    tau = torch.tensor(TAU, dtype=torch.float64, requires_grad=True)
    sample = fixed_noise(dim=dim)
    assert torch.autograd.gradcheck(sample, (x, tau))
    assert torch.autograd.gradgradcheck(sample, (x, tau))


def test_gradients_of_every_order_match_the_reference():
    x, w = logits(4, 6), weights(4, 6)
    def loss_of(sample):
        return lambda x, tau: (sample(x, tau) * w).sum()

    for hard in (False, True):
        ours, theirs = fixed_noise(hard), reference()
        for argnum in (0, 1):
            tau = torch.tensor(TAU, dtype=torch.float64)
            want_grad = torch.func.grad(loss_of(theirs), argnums=argnum)(x, tau)
            torch.testing.assert_close(torch.func.grad(loss_of(ours), argnums=argnum)(x, tau), want_grad)
            want_hessian = torch.func.jacrev(torch.func.jacrev(loss_of(theirs), argnums=argnum), argnums=argnum)
            got_hessian = torch.func.jacrev(torch.func.jacrev(loss_of(ours), argnums=argnum), argnums=argnum)
            torch.testing.assert_close(got_hessian(x, tau), want_hessian(x, tau))
        torch.testing.assert_close(torch.func.jacrev(ours)(x), torch.func.jacrev(theirs)(x))


def test_double_backward_with_create_graph_matches_the_reference():
    w, v = weights(5, 4), weights(5, 4).flip(0)
    results = []
    for sample in (fixed_noise(False), fixed_noise(True), reference()):
        x = logits(5, 4, requires_grad=True)
        (grad,) = torch.autograd.grad((sample(x) * w).sum(), x, create_graph=True)
        (grad * v).sum().backward()  # a Hessian-vector product
        results.append((grad.detach(), x.grad))
    for got in results[:2]:
        torch.testing.assert_close(got, results[2])


def _finite_difference(f, x, v, eps=1e-6):
    return (f(x + eps * v) - f(x - eps * v)) / (2 * eps)


@pytest.mark.parametrize("hard", [False, True])
def test_jvp_and_jacfwd_match_finite_differences(hard):
    # Hard mode's tangent is the soft sample's (straight-through), whose finite differences are checked.
    x, v = logits(4, 6), weights(4, 6)
    ours, soft = fixed_noise(hard), fixed_noise(False)
    _, tangent = torch.func.jvp(ours, (x,), (v,))
    torch.testing.assert_close(tangent, _finite_difference(soft, x, v), atol=1e-8, rtol=1e-6)
    assert tangent.abs().max() > 0.1  # never the silent zeros of a missing rule
    jacobian = torch.func.jacfwd(ours, randomness="same")(x)
    torch.testing.assert_close(jacobian, torch.func.jacrev(reference())(x))

    tau, d_tau = torch.tensor(TAU, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)
    _, tangent = torch.func.jvp(lambda t: ours(x, t), (tau,), (d_tau,))
    want = _finite_difference(lambda t: soft(x, t), tau, d_tau)
    torch.testing.assert_close(tangent, want, atol=1e-8, rtol=1e-6)


def test_forward_ad_dual_tensors_carry_the_tangent():
    x, v = logits(3, 5), weights(3, 5)
    tau, d_tau = torch.tensor(TAU, dtype=torch.float64), torch.tensor(-0.2, dtype=torch.float64)
    for hard in (False, True):
        with forward_ad.dual_level():
            out = fixed_noise(hard)(forward_ad.make_dual(x, v), forward_ad.make_dual(tau, d_tau))
            tangent = forward_ad.unpack_dual(out).tangent
        assert tangent is not None
        want = torch.func.jvp(reference(), (x, tau), (v, d_tau))[1]
        torch.testing.assert_close(tangent, want)


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_learnable_temperature_gets_its_gradient(hard, dtype):
    # As real code passes it: a one-element Parameter, whose gradient keeps its shape and dtype.
    x, w = logits(6, 5).to(dtype), weights(6, 5).to(dtype)
    tau = torch.nn.Parameter(torch.full((1,), TAU, dtype=dtype))
    (fixed_noise(hard)(x, tau) * w).sum().backward()
    assert tau.grad.shape == (1,) and tau.grad.dtype == dtype
    loss = lambda t: (reference()(x.double(), t) * w.double()).sum()  # noqa: E731
    want = torch.func.grad(loss)(torch.tensor(TAU, dtype=torch.float64)).reshape(1)
    torch.testing.assert_close(tau.grad.double(), want, rtol=1e-4 if dtype == torch.float32 else 1e-7, atol=1e-6)


def test_vmap_of_grad_matches_per_sample_gradients():
    xs, w = logits(3, 4, 6), weights(4, 6)
    def loss_of(sample):
        return lambda x: (sample(x) * w).sum()

    for hard in (False, True):
        batched = torch.func.vmap(torch.func.grad(loss_of(fixed_noise(hard))), randomness="same")(xs)
        for b in range(xs.shape[0]):
            torch.testing.assert_close(batched[b], torch.func.grad(loss_of(reference()))(xs[b]))


def test_vmap_keeps_torch_randomness_semantics_without_the_slow_fallback():
    xs = logits(3, 4, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # vmap's per-sample fallback warns on every call
        with pytest.raises(RuntimeError, match="randomness"):
            torch.func.vmap(lambda x: gumbel_softmax(x, TAU))(xs)

        torch.manual_seed(3)
        same = torch.func.vmap(lambda x: gumbel_softmax(x, TAU), randomness="same")(xs)
        for b in range(xs.shape[0]):
            torch.manual_seed(3)
            assert torch.equal(same[b], gumbel_softmax(xs[b], TAU))

        torch.manual_seed(3)
        different = torch.func.vmap(lambda x: gumbel_softmax(x, TAU, True), randomness="different")(xs)
        torch.manual_seed(3)
        seeds = torch.func.vmap(lambda x: draw_seed(x.device), randomness="different")(xs)
    assert seeds.unique().numel() == xs.shape[0]
    for b in range(xs.shape[0]):
        want = gumbel_softmax_fwd_ref(xs[b].unsqueeze(-1), seeds[b], TAU, True).squeeze(-1)
        assert torch.equal(different[b], want)
