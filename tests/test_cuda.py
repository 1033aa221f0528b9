"""End to end on a GPU (skipped without one): the public function, compile and opcheck on CUDA,
and the promise that a seed gives the same samples on CPU and GPU."""

from __future__ import annotations

import pytest
import torch

from gumbel_fused import gumbel_softmax
from gumbel_fused._ops.seed import _HAS_PHILOX_STATE
from gumbel_fused.reference.estimators import ESTIMATORS

from .helpers import as_tensors

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape, dim", [((64, 1000), -1), ((4, 300, 7, 5), 1), ((8, 70000), -1)])
def test_cpu_generator_gives_the_same_samples_on_cpu_and_gpu(shape, dim, dtype):
    x = torch.randn(shape).to(dtype)
    for hard in (False, True):
        on_cpu = gumbel_softmax(x, 0.5, hard, dim=dim, generator=torch.Generator().manual_seed(7))
        on_gpu = gumbel_softmax(x.cuda(), 0.5, hard, dim=dim, generator=torch.Generator().manual_seed(7))
        if hard:
            agree = (on_cpu.argmax(dim) == on_gpu.cpu().argmax(dim)).float().mean().item()
            assert agree > 0.999  # all but near-ties
        else:
            tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
            torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=tol, rtol=tol)


def test_compile_fullgraph_on_cuda():
    x = torch.randn(32, 3, 100, device="cuda", requires_grad=True)
    compiled = torch.compile(gumbel_softmax, fullgraph=True)
    torch.manual_seed(1)
    want = gumbel_softmax(x, 0.5, True, dim=-1)
    torch.manual_seed(1)
    got = compiled(x, 0.5, True, dim=-1)
    torch.testing.assert_close(got, want)
    got.sum().backward()


def test_opcheck_on_cuda():
    seed, tau = as_tensors(3, 0.7, "cuda")
    ops = torch.ops.gumbel_fused
    for hard in (False, True):
        x = torch.randn(16, 33, 2, device="cuda", requires_grad=True)
        torch.library.opcheck(ops.gumbel_softmax_fwd.default, (x, seed, tau, hard))
    grad, saved = torch.randn(4, 9, 1, device="cuda"), torch.randn(4, 9, 1, device="cuda")
    torch.library.opcheck(ops.gumbel_softmax_bwd.default, (grad, saved, seed, tau, True))


def test_forward_and_backward_never_sync_with_the_host():
    # The seed is drawn on the GPU from the CUDA generator and tau travels as a device tensor: a
    # synchronizing call anywhere in either direction raises under sync debug mode "error".
    x = torch.randn(8, 10, device="cuda", requires_grad=True)
    gumbel_softmax(x, 0.5, hard=True).sum().backward()  # first call: imports and compiles outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for hard in (False, True):
            (gumbel_softmax(x, 0.5, hard) * torch.arange(10.0, device="cuda")).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_default_generator_governs_the_samples():
    x = torch.randn(8, 10, device="cuda")
    torch.cuda.manual_seed(0)
    a = gumbel_softmax(x)
    torch.cuda.manual_seed(0)
    assert torch.equal(gumbel_softmax(x), a)


def _kernels_launched(fn) -> list[str]:
    """Names of the GPU kernels ``fn`` launches (after a warm-up call that compiles them)."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]


@pytest.mark.parametrize("hard, estimator", [(False, "st"), *((True, e) for e in ESTIMATORS)])
def test_one_kernel_launch_per_direction(hard, estimator):
    # No seed kernel (a Philox reservation, derived on the host), no tau kernel (passed by value), and for the
    # estimators no argmax kernel (the forward launch records each row's category). Torch before 2.14 has no
    # Generator.philox_state to reserve with: there the seed is torch.randint's, a kernel of its own.
    x = torch.randn(100, 20, 10, device="cuda", requires_grad=True)
    weight = torch.randn(100, 20, 10, device="cuda")
    forward = _kernels_launched(lambda: gumbel_softmax(x, 0.5, hard, estimator=estimator))
    seed_kernels = 0 if _HAS_PHILOX_STATE else 1
    assert len(forward) == 1 + seed_kernels and "gumbel_softmax_fwd" in forward[-1], forward
    y = gumbel_softmax(x, 0.5, hard, estimator=estimator)
    backward = _kernels_launched(lambda: torch.autograd.grad(y, x, weight, retain_graph=True))
    assert len(backward) == 1 and "gumbel_softmax_bwd" in backward[0], backward


def test_cuda_graph_captures_forward_and_backward_and_samples_anew_each_replay():
    x = torch.randn(64, 10, device="cuda", requires_grad=True)
    weight = torch.randn(64, 10, device="cuda")

    def step():
        y = gumbel_softmax(x, 0.5, hard=True)
        return y, torch.autograd.grad((y * weight).sum(), x)[0]

    side = torch.cuda.Stream()  # warm-up on a side stream, as torch.cuda.graph's documentation does
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y, static_grad = step()

    torch.cuda.manual_seed(123)
    replays = []
    for _ in range(4):
        graph.replay()
        replays.append((static_y.clone(), static_grad.clone()))
    assert len({tuple(y.argmax(-1).tolist()) for y, _ in replays}) == 4  # new samples each replay
    # Each replay draws what an eager call draws from the same generator state.
    torch.cuda.manual_seed(123)
    for y, grad in replays:
        want_y, want_grad = step()
        assert torch.equal(y, want_y)
        torch.testing.assert_close(grad, want_grad)


def test_draw_seed_gives_the_seed_an_eager_call_uses():
    from gumbel_fused import draw_seed
    from gumbel_fused.reference import gumbel_softmax_fwd_ref

    x = torch.randn(8, 10, device="cuda")
    torch.cuda.manual_seed(5)
    seed = draw_seed(x.device)
    torch.cuda.manual_seed(5)
    y = gumbel_softmax(x, 0.5)
    torch.testing.assert_close(y, gumbel_softmax_fwd_ref(x.unsqueeze(-1), seed, 0.5, False).squeeze(-1))


def test_invalid_cuda_tensor_tau_gives_nan_without_a_sync():
    x = torch.randn(8, 10, device="cuda")
    taus = [torch.tensor(tau, device="cuda") for tau in (0.5, -1.0, 0.0, float("nan"))]
    gumbel_softmax(x, taus[0])  # compile the kernel outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        samples = [gumbel_softmax(x, tau) for tau in taus[1:]]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isnan(y).all() for y in samples)
