"""Every backend against the eager formula fed the same uniforms (DESIGN.md section 5), and every
backend's gradient estimators against the reference's.

Tolerance rule (from flash-attention's tests): error(ours vs fp64 truth) <= 2 * error(eager formula in
the input dtype vs fp64 truth) + atol. Our kernels compute in fp32 for half inputs, so they are held
to at least eager's accuracy. Hard samples must pick the same category except at near-ties.
"""

from __future__ import annotations

import pytest
import torch

from gumbel_fused.reference import gumbel_softmax_bwd_ref, perturbed_logits_ref

from .conftest import DTYPES
from .helpers import (
    BACKENDS,
    KERNEL_TOL,
    assert_close_verbose,
    eager_soft,
    forward_sample,
    run_bwd,
    run_fwd,
)

ATOL = {dtype: atol for dtype, (atol, _rtol) in KERNEL_TOL.items()}
TAU = 0.7
SEED = 20240611

# (outer, K, inner), each hitting a launcher branch; K spans 1..70000 as the issue asks.
SHAPES = [
    pytest.param((3, 1, 1), id="K1-single-category"),
    pytest.param((5, 2, 1), id="K2-many-rows-per-tile"),
    pytest.param((4, 3, 1), id="K3-partial-philox-group"),
    pytest.param((4, 4, 1), id="K4-one-philox-group"),
    pytest.param((3, 5, 1), id="K5-group-straddle"),
    pytest.param((37, 10, 1), id="K10-vae-rows-masked-tile"),
    pytest.param((6, 127, 1), id="K127-odd"),
    pytest.param((3, 1024, 1), id="K1024-single-pass"),
    pytest.param((2, 4097, 1), id="K4097-single-pass-wide"),
    pytest.param((1, 70000, 1), id="K70000-multi-pass"),
    pytest.param((2, 10, 3), id="inner3-small-K"),
    pytest.param((2, 300, 5), id="inner5-chunked-K"),
]


def _logits(shape, dtype, strided: bool) -> torch.Tensor:
    gen = torch.Generator().manual_seed(hash(shape) % 2**31)
    if not strided:
        return (torch.randn(shape, generator=gen) * 2).to(dtype)
    # Same logical tensor, stored (inner, K, outer) then permuted: no dimension is contiguous.
    outer, n_cols, inner = shape
    base = (torch.randn((inner, n_cols, outer), generator=gen) * 2).to(dtype)
    return base.permute(2, 1, 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES)
def test_soft_forward_matches_eager_formula(backend, dtype, shape):
    for strided in (False, True):
        x = _logits(shape, dtype, strided)
        truth = eager_soft(x, SEED, TAU, torch.float64)
        eager_err = (eager_soft(x, SEED, TAU, dtype).double() - truth).abs().max().item()
        ours = run_fwd(backend, x, SEED, TAU, hard=False)
        assert ours.dtype == dtype and ours.shape == x.shape and ours.is_contiguous()
        assert_close_verbose(ours, truth, atol=2 * eager_err + ATOL[dtype], msg=f"{backend} strided={strided}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES)
def test_hard_forward_is_one_hot_of_eager_argmax(backend, dtype, shape):
    x = _logits(shape, dtype, strided=shape[2] > 1)
    ours = run_fwd(backend, x, SEED, TAU, hard=True)
    assert ours.dtype == dtype
    assert set(ours.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(ours.sum(dim=1), torch.ones_like(ours.sum(dim=1)))
    z = perturbed_logits_ref(x.double(), SEED, TAU)
    want, got = z.argmax(dim=1), ours.argmax(dim=1)
    differs = want != got
    if differs.any():
        # Only near-ties may differ: the chosen category's z must be within rounding of the best.
        gap = (z.amax(dim=1) - z.gather(1, got.unsqueeze(1)).squeeze(1))[differs]
        assert gap.max().item() < 1e-5, f"{backend}: {int(differs.sum())} hard samples differ, gap {gap.max()}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("recompute", [False, True], ids=["soft-saved-y", "hard-recompute"])
def test_backward_matches_eager_formula(backend, dtype, shape, recompute):
    x = _logits(shape, dtype, strided=shape[2] > 1)
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype)

    def jvp(y, dy):
        return y * (dy - (dy * y).sum(dim=1, keepdim=True)) / TAU

    y_truth = eager_soft(x, SEED, TAU, torch.float64)
    truth = jvp(y_truth, grad.double())
    y_eager = eager_soft(x, SEED, TAU, dtype)
    eager_err = (jvp(y_eager, grad).double() - truth).abs().max().item()
    saved = x if recompute else y_truth.to(dtype)
    ours = run_bwd(backend, grad, saved, SEED, TAU, recompute)
    assert ours.dtype == dtype and ours.shape == x.shape
    # Soft mode reads the saved y, which is already rounded to dtype: allow for that rounding.
    saved_err = 0.0 if recompute else (jvp(saved.double(), grad.double()) - truth).abs().max().item()
    assert_close_verbose(ours, truth, atol=2 * max(eager_err, saved_err) + ATOL[dtype], msg=backend)


ESTIMATORS = ["reinmax", "gumbel_rao", "gst", "plain_st"]
# Every launcher branch in fp32; for the other dtypes (which change only loads, stores and the math dtype) a
# whole-row, a masked-tile, an odd and a chunked-inner shape: the interpreter takes minutes for the rest.
_DTYPE_SHAPES = {"K10-vae-rows-masked-tile", "K127-odd", "K4097-single-pass-wide", "inner5-chunked-K"}
ESTIMATOR_CASES = [
    pytest.param(dtype, *shape.values, id=f"{str(dtype).removeprefix('torch.')}-{shape.id}")
    for dtype in DTYPES
    for shape in SHAPES
    if dtype == torch.float32 or shape.id in _DTYPE_SHAPES
]


@pytest.mark.parametrize("backend", ["cpu", "triton"])
@pytest.mark.parametrize("dtype, shape", ESTIMATOR_CASES)
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimator_backward_matches_reference(backend, dtype, shape, estimator):
    # Truth: the reference in fp64 from the same logits; the kernels may err twice as much as the reference
    # does in the input dtype (its math dtype is theirs: fp32 for half inputs).
    x = _logits(shape, dtype, strided=shape[2] > 1)
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    sample = forward_sample(x, SEED, TAU)  # the forward's category, as the autograd keeps it
    args = (torch.tensor(SEED), torch.tensor(TAU, dtype=torch.float64), True, estimator, 3, sample)
    truth = gumbel_softmax_bwd_ref(grad.double(), x.double(), *args)
    reference_err = (gumbel_softmax_bwd_ref(grad, x, *args).double() - truth).abs().max().item()
    ours = run_bwd(backend, grad, x, SEED, TAU, True, estimator, rao_samples=3)
    assert ours.dtype == dtype and ours.shape == x.shape and ours.is_contiguous()
    assert_close_verbose(ours, truth, atol=2 * reference_err + ATOL[dtype], msg=f"{backend} {estimator}")


@pytest.mark.parametrize("backend", ["cpu", "triton"])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimator_backward_at_unit_tau_and_with_special_rows(backend, estimator):
    # tau = 1 takes shortcuts (C++: one softmax for ReinMax's two, no power for Gumbel-Rao); masked
    # categories get 0, and rows with a NaN, no finite logit or a +inf one get NaN, as their forward.
    x = _logits((40, 13, 1), torch.float32, strided=False)
    x[0, 3] = x[5, :7] = float("-inf")
    x[1, 2], x[2], x[3, 12] = float("nan"), float("-inf"), float("inf")
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    want = run_bwd("reference", grad, x, SEED, 1.0, True, estimator, rao_samples=5)
    assert want[1:4].isnan().all() and want[4:].isfinite().all() and (want[0, 3] == 0).all()
    assert_close_verbose(run_bwd(backend, grad, x, SEED, 1.0, True, estimator, rao_samples=5), want, atol=2e-6)
