"""Property-based fuzzing of the public function and the Triton launchers against the reference."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from gumbel_fused import draw_seed, gumbel_softmax
from gumbel_fused.reference import gumbel_softmax_bwd_ref, gumbel_softmax_fwd_ref

from .conftest import DTYPES
from .helpers import PUBLIC_TOL, run_bwd, run_fwd


@st.composite
def problems(draw):
    shape = draw(st.lists(st.integers(1, 9), min_size=1, max_size=4))
    if draw(st.booleans()):  # now and then a long category axis
        shape[draw(st.integers(0, len(shape) - 1))] = draw(st.integers(10, 700))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    dtype = draw(st.sampled_from(DTYPES))
    tau = draw(st.floats(0.05, 10.0))
    hard = draw(st.booleans())
    transpose = len(shape) > 1 and draw(st.booleans())
    seed = draw(st.integers(0, 2**63 - 2))
    return shape, dim, dtype, tau, hard, transpose, seed


def _to_3d(x: torch.Tensor, dim: int) -> torch.Tensor:
    dim %= x.dim()
    return x.reshape(math.prod(x.shape[:dim]), x.shape[dim], math.prod(x.shape[dim + 1 :]))


@given(problems())
def test_public_function_and_triton_match_reference(problem):
    shape, dim, dtype, tau, hard, transpose, seed = problem
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed % 2**31)).to(dtype)
    if transpose:
        x = x.transpose(0, -1)
    x.requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)
    seed_tensor = draw_seed(torch.device("cpu"), torch.Generator().manual_seed(seed))

    y = gumbel_softmax(x, tau, hard, dim=dim, generator=generator)
    x3d = _to_3d(x.detach(), dim)
    tau_tensor = torch.tensor(tau, dtype=torch.float64)
    want = gumbel_softmax_fwd_ref(x3d, seed_tensor, tau_tensor, hard)
    tol = PUBLIC_TOL[dtype]
    torch.testing.assert_close(_to_3d(y.detach(), dim), want, atol=tol, rtol=tol)
    torch.testing.assert_close(run_fwd("triton", x3d, int(seed_tensor), tau, hard), want, atol=tol, rtol=tol)

    grad = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    if transpose:
        grad = grad.transpose(0, -1)
    y.backward(grad)
    saved = x3d if hard else want
    want_dx = gumbel_softmax_bwd_ref(_to_3d(grad, dim), saved, seed_tensor, tau_tensor, hard)
    grad_tol = tol * max(1.0, 1.0 / tau)
    torch.testing.assert_close(_to_3d(x.grad, dim), want_dx, atol=grad_tol, rtol=tol)
    triton_dx = run_bwd("triton", _to_3d(grad, dim), saved, int(seed_tensor), tau, hard)
    torch.testing.assert_close(triton_dx, want_dx, atol=grad_tol, rtol=tol)
