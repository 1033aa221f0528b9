"""Per-call overhead at the VAE's size, (100, 20, 10) fp32 with the categories last: the public function against
its own kernels called bare, and against eager ``F.gumbel_softmax``, on one CPU thread.

At this size the kernels take tens of microseconds, so what a call adds around them (argument checks, the seed,
the dispatch to the kernels, autograd's node and its backward) decides the speed-up. Two benchmarks per
(direction, mode), in one group:

* ``fused``: ``gumbel_fused.gumbel_softmax``, as a user calls it, timed in pairs with its kernels (``run_paired``):
  the C++ entry points called directly with a prepared seed, the floor, nothing but the kernels (and the
  ``torch.autograd.grad`` call of a trivial op in ``fwd+bwd``, which eager pays too). ``extra_info`` holds the
  kernels' median (``rival_median``) and the overhead, the median over rounds of the call's time minus its
  kernels' (``median_difference``, seconds). Timed apart, a minute or less from each other, the two medians
  moved by more than the overhead on the shared 2-core VM (differences of -1 to 55 us from three runs of the
  same code); interleaved call by call, both see the same load.
* ``eager``: ``F.gumbel_softmax``.

One thread: the overhead is single-threaded Python and dispatch, the kernels at this size gain little from a
second thread, and on a shared 2-core machine a second thread mostly waits on a descheduled peer (issue 13).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _common import DIRECTIONS, MODES, describe_vae_benchmark, make_logits, run_paired, run_timed

from gumbel_fused import _cpu, gumbel_softmax

IMPLS = ("fused", "eager")


def kernels_step(x: torch.Tensor, hard: bool, direction: str):
    """The C++ forward (and backward, after a grad call of a trivial op to count the autograd engine once)."""
    kernels = _cpu.load_cpu_kernels()
    if kernels is None:
        pytest.skip("the C++ kernels are not available on this machine")
    seed, grad = 20240611, torch.ones_like(x)
    view = x.detach().reshape(-1, x.shape[-1], 1)  # the kernels' (outer, K, inner) layout of dim=-1
    leaf = torch.zeros((), requires_grad=True)
    if direction == "fwd":
        return lambda: kernels.fwd(view, seed, 1.0, hard)

    def forward_backward():
        y = kernels.fwd(view, seed, 1.0, hard)
        torch.autograd.grad(leaf * 1.0, leaf)  # the engine's fixed cost, which every autograd call pays
        return kernels.bwd(grad.view_as(view), view if hard else y, seed, 1.0, hard)

    return forward_backward


def public_step(fn, x: torch.Tensor, hard: bool, direction: str):
    """One call of ``fn`` as the speed suite makes it: no_grad forward, or forward + ``autograd.grad``."""
    if direction == "fwd":

        def forward():
            with torch.no_grad():
                return fn(x, 1.0, hard)

        return forward
    grad = torch.ones_like(x)
    return lambda: torch.autograd.grad(fn(x, 1.0, hard), x, grad)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_overhead(benchmark, bench_config, one_thread, direction, mode, impl):
    hard = MODES[mode]
    shape = describe_vae_benchmark(benchmark, suite="overhead", impl=impl, direction=direction, mode=mode)
    x = make_logits(shape, torch.float32, "cpu", requires_grad=direction == "fwd+bwd")
    if impl == "eager":
        run_timed(benchmark, public_step(F.gumbel_softmax, x, hard, direction), "cpu", bench_config.budget("cpu"))
        return
    step, kernels = public_step(gumbel_softmax, x, hard, direction), kernels_step(x, hard, direction)
    run_paired(benchmark, step, kernels, "cpu", bench_config.budget("cpu"))
    benchmark.extra_info["rival"] = "kernels"
