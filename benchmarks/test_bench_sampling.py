"""Speed of the sampling ops at LLM shapes: ``gumbel_max`` against ``torch.multinomial(softmax)`` and eager
Gumbel-max, and ``gumbel_topk`` (k = 50) against ``torch.multinomial`` without replacement and eager Gumbel-top-k.

Rows of a vocabulary (V = 32000, Llama 2; V = 128256, Llama 3) for B = 1 (decoding one sequence), 64 and 256,
fp32 and bf16. One pytest-benchmark group per (device, shape, dtype, op), so that its table compares the
implementations directly; ``report.py`` renders the ratios. Quick mode keeps V (it decides the kernels' branch)
and cuts B. Bytes moved: the logits, read once (the output is a few bytes a row).
"""

from __future__ import annotations

import math

import pytest
import torch
from _common import DTYPES, Shape, describe_benchmark, devices, make_logits, record_throughput, run_timed

from gumbel_fused import gumbel_max, gumbel_topk

SHAPES = {
    f"B{b}-V{v}": Shape((b, v), (b, v), (min(b, 4), v))
    for b in (1, 64, 256)
    for v in (32000, 128256)
}
TOPK = 50


def _multinomial(k: int):
    """torch.multinomial on the softmax, as a sampler without the Gumbel trick does it (fp32 probabilities)."""
    return lambda x: torch.multinomial(torch.softmax(x, -1, dtype=torch.float32), k)


def _eager_gumbel(x: torch.Tensor) -> torch.Tensor:
    """x + G in x's dtype, G = -log(E) with E ~ Exp(1): what F.gumbel_softmax draws."""
    return x - torch.empty_like(x).exponential_().log()


SAMPLERS = {
    "gumbel_max": {
        "multinomial": _multinomial(1),
        "eager": lambda x: _eager_gumbel(x).argmax(-1),
        "fused": lambda x: gumbel_max(x),
    },
    f"gumbel_topk-{TOPK}": {
        "multinomial": _multinomial(TOPK),
        "eager": lambda x: _eager_gumbel(x).topk(TOPK, -1).indices,
        "fused": lambda x: gumbel_topk(x, TOPK),
    },
}


@pytest.mark.parametrize("impl", ("multinomial", "eager", "fused"))
@pytest.mark.parametrize("op", SAMPLERS)
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("device", devices())
def test_sampling(benchmark, bench_config, device, shape_name, dtype_name, op, impl):
    shape = bench_config.shape(shape_name, device, SHAPES)
    x = make_logits(shape, DTYPES[dtype_name], device)
    sample = SAMPLERS[op][impl]
    describe_benchmark(
        benchmark,
        suite="sampling",
        group=f"{device} {shape_name} {tuple(shape)} {dtype_name} {op}",
        impl=impl,
        device=device,
        shape_name=shape_name,
        shape=shape,
        dim=-1,
        dtype_name=dtype_name,
        direction="fwd",
        mode=op,
    )

    def step():
        with torch.no_grad():
            return sample(x)

    numel = math.prod(shape)
    median = run_timed(benchmark, step, device, bench_config.budget(device))
    record_throughput(benchmark, median, numel, numel * x.dtype.itemsize)
