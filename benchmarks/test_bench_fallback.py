"""Speed of the fallback: the pure-PyTorch reference, which runs on CPU when no C++ compiler can build the
kernels, against the eager ``F.gumbel_softmax`` it replaces, forward only, on one thread.

One thread, as the issue that asked for it measured (issue 13), and because the fallback is all tensor ops
whose thread scaling is torch's, not ours. The reference is called on the op layout directly
(``gumbel_softmax_fwd_ref``), so the numbers are its own and do not depend on whether this machine can build
the kernels. One benchmark per (shape, mode) times the reference with eager's calls interleaved between its
own (``run_paired``), since a ratio near 1 taken from two benchmarks run one after the other measures the
machine's load as much as the code; ``extra_info["rival_median"]`` holds eager's median. The report renders
them in a table of their own.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _common import MODES, describe_benchmark, make_logits, record_throughput, run_paired

from gumbel_fused.reference import gumbel_softmax_fwd_ref

# The shapes of issue 13: vae is (2000, 10) logically, 100 x 20 categoricals of 10 classes.
FALLBACK_SHAPES = ("vae", "tall", "vocab")


def fallback_steps(x: torch.Tensor, hard: bool):
    """One no-grad forward of the reference and one of eager on logits ``x``, softmax over the last dim."""
    seed = torch.tensor(20240611)
    x3d = x.reshape(-1, x.shape[-1], 1)  # the op layout (outer, K, inner) of dim=-1

    def reference():
        with torch.no_grad():
            return gumbel_softmax_fwd_ref(x3d, seed, 1.0, hard)

    def eager():
        with torch.no_grad():
            return F.gumbel_softmax(x, 1.0, hard)

    return reference, eager


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape_name", FALLBACK_SHAPES)
def test_fallback(benchmark, bench_config, one_thread, shape_name, mode):
    shape = bench_config.shape(shape_name, "cpu")
    x = make_logits(shape, torch.float32, "cpu")
    describe_benchmark(
        benchmark,
        suite="fallback",
        group=f"fallback cpu-1-thread {shape_name} {tuple(shape)} fp32 fwd {mode}",
        impl="reference",
        device="cpu",
        shape_name=shape_name,
        shape=shape,
        dim=-1,
        dtype_name="fp32",
        direction="fwd",
        mode=mode,
    )
    numel = math.prod(shape)
    reference, eager = fallback_steps(x, MODES[mode])
    median, _ = run_paired(benchmark, reference, eager, "cpu", bench_config.budget("cpu"))
    benchmark.extra_info["rival"] = "eager"
    record_throughput(benchmark, median, numel, 2 * numel * x.itemsize)
