"""Speed of the fallback: the pure-PyTorch reference, which runs on CPU when no C++ compiler can build the
kernels, against the eager ``F.gumbel_softmax`` it replaces, forward only, on one thread.

One thread, as the issue that asked for it measured (issue 13), and because the fallback is all tensor ops
whose thread scaling is torch's, not ours. The reference is called on the op layout directly
(``gumbel_softmax_fwd_ref``), so the numbers are its own and do not depend on whether this machine can build
the kernels. One benchmark group per (shape, mode), so that its table compares the two directly; the report
renders them in a table of their own.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _common import MODES, describe_benchmark, make_logits, record_throughput, run_timed

from gumbel_fused.reference import gumbel_softmax_fwd_ref

FALLBACK_IMPLS = ("eager", "reference")
# The shapes of issue 13: vae is (2000, 10) logically, 100 x 20 categoricals of 10 classes.
FALLBACK_SHAPES = ("vae", "tall", "vocab")


def fallback_step(impl: str, x: torch.Tensor, hard: bool):
    """One forward of ``impl`` on logits ``x`` with the softmax over the last dim, under no_grad."""
    seed = torch.tensor(20240611)
    x3d = x.reshape(-1, x.shape[-1], 1)  # the op layout (outer, K, inner) of dim=-1

    def step():
        with torch.no_grad():
            if impl == "eager":
                return F.gumbel_softmax(x, 1.0, hard)
            return gumbel_softmax_fwd_ref(x3d, seed, 1.0, hard)

    return step


@pytest.mark.parametrize("impl", FALLBACK_IMPLS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape_name", FALLBACK_SHAPES)
def test_fallback(benchmark, bench_config, one_thread, shape_name, mode, impl):
    shape = bench_config.shape(shape_name, "cpu")
    x = make_logits(shape, torch.float32, "cpu")
    describe_benchmark(
        benchmark,
        suite="fallback",
        group=f"fallback cpu-1-thread {shape_name} {tuple(shape)} fp32 fwd {mode}",
        impl=impl,
        device="cpu",
        shape_name=shape_name,
        shape=shape,
        dim=-1,
        dtype_name="fp32",
        direction="fwd",
        mode=mode,
    )
    numel = math.prod(shape)
    median = run_timed(benchmark, fallback_step(impl, x, MODES[mode]), "cpu", bench_config.budget("cpu"))
    record_throughput(benchmark, median, numel, 2 * numel * x.itemsize)
