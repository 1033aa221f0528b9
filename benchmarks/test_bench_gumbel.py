"""Speed: eager ``F.gumbel_softmax`` vs ``torch.compile`` of it vs the fused op, side by side.

One pytest-benchmark group per (device, shape, dtype, direction, mode), so that its table compares the
implementations directly. ``extra_info`` carries the shape, the nominal bytes moved (see _common) and the
elements/s and GB/s derived from the median.
"""

from __future__ import annotations

import math

import pytest
from _common import (
    DIRECTIONS,
    DTYPES,
    IMPLS,
    MODES,
    SHAPES,
    bytes_moved,
    describe_benchmark,
    devices,
    make_logits,
    record_throughput,
    run_timed,
    sampler,
    step_fn,
)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("device", devices())
def test_gumbel_softmax(benchmark, bench_config, device, shape_name, dtype_name, direction, mode, impl):
    dtype, hard, dim = DTYPES[dtype_name], MODES[mode], SHAPES[shape_name].dim
    shape = bench_config.shape(shape_name, device)
    x = make_logits(shape, dtype, device, requires_grad=direction == "fwd+bwd")
    fn = sampler(impl, device, shape, dtype, hard)

    describe_benchmark(
        benchmark,
        suite="gumbel",
        group=f"{device} {shape_name} {tuple(shape)} {dtype_name} {direction} {mode}",
        impl=impl,
        device=device,
        shape_name=shape_name,
        shape=shape,
        dim=dim,
        dtype_name=dtype_name,
        direction=direction,
        mode=mode,
    )
    numel = math.prod(shape)
    median = run_timed(benchmark, step_fn(fn, x, hard, dim, direction), device, bench_config.budget(device))
    record_throughput(benchmark, median, numel, bytes_moved(numel, dtype, direction))
