"""The dispatch point: the direct eager call and the registered op run the same kernels, the eager call
skips the dispatcher, and the ops batch under vmap without torch's slow fallback."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch

from gumbel_fused import _cpu, gumbel_softmax
from gumbel_fused._ops import gumbel_softmax as ops
from gumbel_fused._ops._dispatch import runs_plain_eager
from gumbel_fused._triton import gumbel_softmax as triton_launchers

from ..conftest import TRITON_DEVICE
from ..helpers import RecordOps, as_tensors


@pytest.mark.parametrize("dim", [-1, 1, 0])
@pytest.mark.parametrize("hard", [False, True])
def test_direct_call_and_registered_op_agree(hard, dim):
    x = torch.randn(6, 5, 4)
    weight = torch.randn(6, 5, 4)
    tau = torch.tensor(0.8, requires_grad=True)
    results = []
    for through_dispatcher in (False, True):
        leaf = x.clone().requires_grad_()
        mode = RecordOps()
        with mode if through_dispatcher else contextlib.nullcontext():
            y = gumbel_softmax(leaf, tau, hard, dim=dim, generator=torch.Generator().manual_seed(1))
            (y * weight).sum().backward()
        if through_dispatcher:
            assert "gumbel_fused.gumbel_softmax_fwd.default" in mode.ops
            assert "gumbel_fused.gumbel_softmax_bwd.default" in mode.ops
        results.append((y, leaf.grad, tau.grad))
        tau.grad = None
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1:], results[1][1:])


def test_eager_call_makes_no_tensor_for_tau_or_the_seed_and_skips_the_dispatcher():
    x = torch.randn(10, 7, requires_grad=True)
    with torch.profiler.profile() as prof:
        gumbel_softmax(x, 0.5, hard=True).sum().backward()
    names = {event.name for event in prof.events()}
    if _cpu.load_cpu_kernels() is not None:
        assert "aten::randint" not in names  # the seed: torch.randint's draw, made in C++ as an int
    assert not {"aten::full", "aten::ones", "aten::mul", "aten::lift_fresh"} & names  # tau stays a float
    assert not any(name.startswith("gumbel_fused::") for name in names)  # the kernels, called directly


def _forward_through(kernel: str):
    """The op's forward through one backend's kernel, the way ``direct`` runs it: on the op layer's views, with
    keyword options."""
    op = ops.gumbel_softmax_fwd
    if kernel == "cpp":
        if _cpu.load_cpu_kernels() is None:
            pytest.skip("the C++ kernels are not available")
        return op.direct
    launcher = op._reference if kernel == "reference" else triton_launchers.gumbel_softmax_fwd
    return lambda *args, **options: op._run(launcher, args, options)


@pytest.mark.parametrize("kernel", ["cpp", "reference", "triton"])  # Triton: on CUDA, or interpreted
@pytest.mark.parametrize("dim", [2, 1, 0])  # the op's dim: canonical (the public function makes it so)
def test_every_kernel_records_the_category_in_the_callers_shape(kernel, dim):
    # What the estimators' eager forward asks of every backend (GumbelSoftmaxRules.eager_forward): each row's
    # category from the pass that samples, in the caller's shape with 1 on dim, what sample_index finds in the
    # one-hot (0 for a NaN row, argmax's first NaN); the sample itself is unchanged.
    forward = _forward_through(kernel)
    x = torch.randn(6, 5, 4)
    x[0, 0, 0] = float("nan")
    x = x.to(TRITON_DEVICE if kernel == "triton" else "cpu")
    seed, tau = as_tensors(11, 0.8, x.device)
    y, sample = forward(x, seed, tau, True, dim, "reinmax", 10, record_sample=True)
    assert sample.dtype == torch.int64 and sample.shape == tuple(1 if d == dim else n for d, n in enumerate(x.shape))
    torch.testing.assert_close(y, forward(x, seed, tau, True, dim, "reinmax", 10), rtol=0, atol=0, equal_nan=True)
    assert y.isnan().any() and torch.equal(sample, y.argmax(dim, keepdim=True))
    with pytest.raises(ValueError, match="only a hard sample has a category"):
        forward(x, seed, tau, False, dim, "st", 10, record_sample=True)


def test_runs_plain_eager_only_for_plain_tensors_outside_transforms_and_modes():
    x = torch.randn(3)
    assert runs_plain_eager(x) and runs_plain_eager(torch.nn.Parameter(x))
    with RecordOps():
        assert not runs_plain_eager(x)
    with torch.overrides.TorchFunctionMode():
        assert not runs_plain_eager(x)
    assert torch.func.vmap(lambda t: torch.tensor(runs_plain_eager(t)))(x.view(3, 1)).tolist() == [False] * 3
    assert not runs_plain_eager(torch.Tensor._make_subclass(_Subclass, x))


class _Subclass(torch.Tensor):
    pass


@pytest.mark.parametrize("hard", [False, True])
def test_ops_batch_per_sample_under_vmap(hard):
    # Batched or shared seed and tau: each batch element is the unbatched op on its slice.
    x = torch.randn(3, 4, 6)
    grad = torch.randn(3, 4, 6)
    seeds = torch.tensor([5, 6, 7])
    taus = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the fallback's performance warning
        fwd = torch.func.vmap(ops.gumbel_softmax_fwd, in_dims=(0, 0, 0, None, None))(x, seeds, taus, hard, 1)
        shared = torch.func.vmap(ops.gumbel_softmax_fwd, in_dims=(0, None, None, None, None))(
            x, seeds[0], taus[0], hard, 1
        )
        bwd = torch.func.vmap(ops.gumbel_softmax_bwd, in_dims=(0, 0, 0, 0, None, None))(grad, x, seeds, taus, True, 1)
    for b in range(3):
        assert torch.equal(fwd[b], ops.gumbel_softmax_fwd(x[b], seeds[b], taus[b], hard, 1))
        assert torch.equal(shared[b], ops.gumbel_softmax_fwd(x[b], seeds[0], taus[0], hard, 1))
        assert torch.equal(bwd[b], ops.gumbel_softmax_bwd(grad[b], x[b], seeds[b], taus[b], True, 1))
