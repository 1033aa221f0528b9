"""Memory: peak extra bytes allocated by one forward + backward, per implementation (fp32).

"Extra" means beyond what exists before the call: the logits and the incoming grad are allocated
beforehand and not counted; the returned grad of the logits is (every implementation has to make it).

How it is counted:

* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus the bytes
  allocated before the call.
* CPU: there is no peak counter, so the call runs under ``torch.profiler`` with ``profile_memory=True``,
  which records every allocation and free of the CPU allocator with its size, in order: those made by
  eager aten ops, by the C++ kernels and by torch.compile's generated code alike. The running sum of
  the sizes gives the live bytes at each event and so their peak. The events carry no address, so a
  free counts only if an allocation of the same size was made inside the window (a tensor freed in the
  window but allocated before it, such as a previous result, would otherwise lower the count).

``extra_info`` also reports ``saved_bytes``: the bytes autograd keeps between forward and backward
(``torch.autograd.graph.saved_tensors_hooks``), counting each storage once and not the logits', which
exist anyway. The timing of these benchmarks is that of the measurement itself: read their
``extra_info``, not their time (the speed is test_bench_gumbel's job).
"""

from __future__ import annotations

import gc
import math
from collections import Counter

import pytest
import torch
from _common import IMPLS, MODES, SHAPES, describe_benchmark, devices, make_logits, sampler, step_fn
from torch.profiler import ProfilerActivity, profile


def saved_bytes(step, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves during ``step()``, the logits' own excluded."""
    seen = {x.untyped_storage().data_ptr()}
    total = 0

    def pack(t):
        nonlocal total
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total


def peak_bytes_cpu(step) -> int:
    """Peak live bytes allocated by ``step()`` on the CPU allocator (see the module docstring)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    outstanding: Counter[int] = Counter()
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        size = event.nbytes()
        if size > 0:
            outstanding[size] += 1
        elif outstanding[-size] > 0:
            outstanding[-size] -= 1
        else:
            continue  # freed a block allocated before the window
        live += size
        peak = max(peak, live)
    return peak


def peak_bytes_cuda(step) -> int:
    """Peak bytes allocated by ``step()`` on the CUDA caching allocator, above what was allocated before."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("device", devices())
def test_memory(benchmark, bench_config, device, shape_name, mode, impl):
    dtype, hard, dim = torch.float32, MODES[mode], SHAPES[shape_name].dim
    shape = bench_config.shape(shape_name, device)
    x = make_logits(shape, dtype, device, requires_grad=True)
    step = step_fn(sampler(impl, device, shape, dtype, hard), x, hard, dim, "fwd+bwd")
    step()  # warm-up: torch.compile compiles here, and lazy initializations happen outside the count
    step()
    gc.collect()

    def measure():
        saved = saved_bytes(step, x)
        peak = peak_bytes_cuda(step) if device == "cuda" else peak_bytes_cpu(step)
        return peak, saved

    describe_benchmark(
        benchmark,
        suite="memory",
        group=f"memory {device} {shape_name} {tuple(shape)} fp32 fwd+bwd {mode}",
        impl=impl,
        device=device,
        shape_name=shape_name,
        shape=shape,
        dim=dim,
        dtype_name="fp32",
        direction="fwd+bwd",
        mode=mode,
    )
    peak, saved = benchmark.pedantic(measure, rounds=1, iterations=1)
    numel = math.prod(shape)
    benchmark.extra_info.update(
        numel=numel,
        peak_bytes=peak,
        peak_per_input=peak / (numel * dtype.itemsize),  # in units of the logits' size
        saved_bytes=saved,
    )
