"""Shared pieces of the benchmark suites: shapes, implementations, the compile cache and timing.

Every suite parametrizes over the names defined here (shape, dtype, mode, direction, implementation)
and resolves them at run time through :class:`BenchConfig`, so that quick mode (``--bench-quick`` or
``GUMBEL_BENCH_QUICK=1``) keeps the same test ids and benchmark groups with smaller sizes.

Bytes moved, the unit of ``extra_info["bytes"]`` and of the report's GB/s, count the traffic of an ideal
fused kernel, the same for every implementation (so GB/s is an *effective* bandwidth):

* forward: read logits + write the output, ``2 * numel * itemsize``;
* forward + backward: that, plus read the incoming grad, read the one saved full-size tensor (the output
  for soft, the logits for hard, from which y is regenerated) and write the logits' grad:
  ``5 * numel * itemsize``.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gumbel_fused import _cpu, gumbel_softmax

QUICK_ENV = "GUMBEL_BENCH_QUICK"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MODES = {"hard": True, "soft": False}
DIRECTIONS = ("fwd", "fwd+bwd")
IMPLS = ("eager", "compile", "fused")
BYTES_PER_ELEMENT_MOVED = {"fwd": 2, "fwd+bwd": 5}  # in units of numel * itemsize, see the module docstring


@dataclass(frozen=True)
class Shape:
    """A benchmark shape: ``full[device]`` for manual runs, ``quick`` for CI; softmax over ``dim``."""

    cpu: tuple[int, ...]
    cuda: tuple[int, ...]
    quick: tuple[int, ...]
    dim: int = -1


# Quick shapes keep each K (the row length decides the kernels' dispatch branch) and cut the rows.
SHAPES = {
    "vae": Shape((100, 20, 10), (100, 20, 10), (100, 20, 10)),  # Jang et al.'s 20 x 10 categorical VAE
    "tall": Shape((200000, 10), (200000, 10), (20000, 10)),  # many tiny rows
    "square": Shape((4096, 1024), (4096, 1024), (128, 1024)),
    "vocab": Shape((256, 32000), (256, 32000), (8, 32000)),  # an LLM vocabulary
    "long": Shape((64, 131072), (64, 131072), (2, 131072)),  # rows longer than one Triton block
    # DALL-E's dVAE: 8192 codes over a 32 x 32 grid, softmax over dim 1 (strided rows). B = 1 on CPU
    # (8.4M elements, ~0.5 s per eager call on 2 cores); B = 16 on a GPU.
    "dvae": Shape((1, 8192, 32, 32), (16, 8192, 32, 32), (1, 8192, 4, 4), dim=1),
}


@dataclass(frozen=True)
class Budget:
    """How long to time one benchmark: ``seconds`` of rounds, clamped to [min_rounds, max_rounds]."""

    seconds: float
    min_rounds: int
    max_rounds: int
    min_round_s: float  # a round repeats the call until it lasts this long (timer resolution, launch noise)

    def rounds(self, round_s: float) -> int:
        """How many rounds of ``round_s`` seconds fit in ``seconds``, clamped to [min_rounds, max_rounds]."""
        return min(max(int(self.seconds / max(round_s, 1e-9)), self.min_rounds), self.max_rounds)


FULL_BUDGET = {"cpu": Budget(1.5, 3, 200, 2e-3), "cuda": Budget(1.0, 10, 2000, 1e-3)}
QUICK_BUDGET = Budget(0.05, 2, 10, 1e-3)


@dataclass(frozen=True)
class BenchConfig:
    """Run-wide settings, from the command line (see conftest.py)."""

    quick: bool

    def shape(self, name: str, device: str, table: dict[str, Shape] | None = None) -> tuple[int, ...]:
        """The shape called ``name`` in ``table`` (the gumbel suites' SHAPES by default) for this run."""
        spec = (SHAPES if table is None else table)[name]
        return spec.quick if self.quick else getattr(spec, device)

    def budget(self, device: str) -> Budget:
        return QUICK_BUDGET if self.quick else FULL_BUDGET[device]


def quick_from_env() -> bool:
    """True when ``GUMBEL_BENCH_QUICK`` is set to anything but '', '0' or 'false'."""
    return os.environ.get(QUICK_ENV, "").strip().lower() not in ("", "0", "false")


def devices() -> list[str]:
    """The devices to benchmark on: CPU always, CUDA when present."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def impl_label(impl: str, device: str) -> str:
    """The name shown in tables: ``eager``, ``compile``, ``fused-cpu`` or ``fused-cuda``."""
    return f"fused-{device}" if impl == "fused" else impl


def cpu_backend() -> str:
    """What ``fused`` runs on CPU: the C++ kernels, or the pure-PyTorch reference until they exist."""
    return "C++" if _cpu.load_cpu_kernels() is not None else "reference (pure PyTorch)"


def make_logits(shape, dtype, device, requires_grad=False, seed=0) -> torch.Tensor:
    """Standard-normal logits (a fixed seed, so every implementation sees the same input)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)
    return x.requires_grad_(requires_grad)


def bytes_moved(numel: int, dtype: torch.dtype, direction: str) -> int:
    """Nominal bytes moved by one call (see the module docstring for the count)."""
    return BYTES_PER_ELEMENT_MOVED[direction] * numel * dtype.itemsize


# --- implementations -------------------------------------------------------------------------------

_COMPILED: dict[tuple, Callable] = {}


def _fresh_copy(fn: Callable, tag: str) -> Callable:
    """``fn`` with a code object of its own.

    Dynamo keeps its cache of compiled graphs on the code object, so every ``torch.compile`` of
    ``F.gumbel_softmax`` would share one list of guarded entries: the list would grow with each shape,
    dtype and mode benchmarked, and every call would check the guards of all of them (tens of
    microseconds at the VAE's size), until the recompile limit. A user compiles it for one shape;
    a copy per cache key gives each benchmark exactly that.
    """
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{tag}")
    copy = type(fn)(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    return copy


def compiled_gumbel_softmax(device: str, shape: tuple[int, ...], dtype: torch.dtype, hard: bool) -> Callable:
    """``torch.compile(F.gumbel_softmax, dynamic=False)``, compiled once per (device, shape, dtype, mode).

    Returns the compiled function (same signature as ``F.gumbel_softmax``); it compiles on its first call,
    which the timing helpers make outside the timed region. Forward-only and forward + backward calls
    share it (Dynamo keeps one entry for each grad mode).
    """
    key = (device, tuple(shape), dtype, hard)
    if key not in _COMPILED:
        tag = f"{len(_COMPILED)}"
        _COMPILED[key] = torch.compile(_fresh_copy(F.gumbel_softmax, tag), dynamic=False)
    return _COMPILED[key]


def sampler(impl: str, device: str, shape: tuple[int, ...], dtype: torch.dtype, hard: bool) -> Callable:
    """A Gumbel-softmax with the signature of ``F.gumbel_softmax``: ``eager``, ``compile`` or ``fused``."""
    if impl == "eager":
        return F.gumbel_softmax
    if impl == "compile":
        return compiled_gumbel_softmax(device, shape, dtype, hard)
    if impl == "fused":
        return gumbel_softmax
    raise ValueError(f"unknown implementation {impl!r}")


def step_fn(fn: Callable, x: torch.Tensor, hard: bool, dim: int, direction: str) -> Callable[[], object]:
    """One call of the benchmarked work: forward, or forward + backward with a ones grad.

    The backward goes through ``torch.autograd.grad`` so nothing accumulates into ``x.grad``.
    """
    if direction == "fwd":

        def forward():
            with torch.no_grad():
                return fn(x, 1.0, hard, dim=dim)

        return forward
    grad = torch.ones_like(x)

    def forward_backward():
        y = fn(x, 1.0, hard, dim=dim)
        return torch.autograd.grad(y, x, grad)

    return forward_backward


# --- timing ----------------------------------------------------------------------------------------


def synchronized(fn: Callable[[], object], device: str) -> Callable[[], object]:
    """``fn`` followed by a device synchronize on CUDA, so a timed call covers the kernels it queued."""
    if device != "cuda":
        return fn

    def call():
        out = fn()
        torch.cuda.synchronize()
        return out

    return call


def run_timed(benchmark, fn: Callable[[], object], device: str, budget: Budget, warmup: int = 2) -> float | None:
    """Time ``fn`` with pytest-benchmark in pedantic mode; returns the median seconds per call.

    ``warmup`` untimed calls first (torch.compile compiles in the first one), then one more call sizes
    the run: ``iterations`` per round so that a round lasts ``budget.min_round_s``, and as many rounds
    as fit in ``budget.seconds``, within ``[budget.min_rounds, budget.max_rounds]``. The pedantic mode
    matters on CPU: a large eager call takes ~0.5 s, and pytest-benchmark's default calibration would
    spend a second per benchmark before it starts. Returns None under ``--benchmark-disable``.
    """
    fn = synchronized(fn, device)
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    iterations = max(1, math.ceil(budget.min_round_s / max(once, 1e-9)))
    benchmark.pedantic(fn, rounds=budget.rounds(once * iterations), iterations=iterations, warmup_rounds=0)
    if benchmark.stats is None:  # --benchmark-disable: pedantic ran fn once, untimed
        return None
    return benchmark.stats.stats.median


def run_paired(
    benchmark, fn: Callable[[], object], rival: Callable[[], object], device: str, budget: Budget, warmup: int = 2
) -> tuple[float | None, float | None]:
    """Time ``fn`` with pytest-benchmark, each round preceded by one call of ``rival`` that is timed too;
    returns the medians of both, seconds per call (None, None under ``--benchmark-disable``), and records in
    ``extra_info`` the rival's median (``rival_median``) and the median over rounds of ``fn``'s time minus the
    rival's just before it (``median_difference``): for a difference smaller than the machine's drift, which
    moves both medians (on the 2-core VM the C++ kernels' median took 48-50 us in one run and 61-63 us in the
    next).

    For ratios near 1 on a shared machine. Other tenants' load comes and goes over seconds, and it slows
    whichever benchmark runs then: on the 2-core VM, the same call timed in two processes one after the
    other differed by up to 1.7x. Interleaved call by call, both implementations see the same load. One
    call a round (pytest-benchmark times a round with a setup as one iteration), so each time includes the
    timer's own cost, a fraction of a microsecond: noise below about 1% for calls of 50 us or more.
    """
    fn, rival = synchronized(fn, device), synchronized(rival, device)
    for _ in range(warmup):
        fn()
        rival()
    start = time.perf_counter()
    fn()
    rival()
    pair = time.perf_counter() - start
    rival_seconds: list[float] = []

    def timed_rival():
        start = time.perf_counter()
        rival()
        rival_seconds.append(time.perf_counter() - start)

    benchmark.pedantic(fn, setup=timed_rival, rounds=budget.rounds(pair), warmup_rounds=0)
    if benchmark.stats is None:
        return None, None
    rounds = benchmark.stats.stats.data  # one call a round, in the order of rival_seconds
    benchmark.extra_info.update(
        rival_median=statistics.median(rival_seconds),
        median_difference=statistics.median(t - r for t, r in zip(rounds, rival_seconds, strict=True)),
    )
    return benchmark.stats.stats.median, benchmark.extra_info["rival_median"]


def describe_benchmark(
    benchmark,
    *,
    suite: str,
    group: str,
    impl: str,
    device: str,
    shape_name: str,
    shape,
    dim: int,
    dtype_name: str,
    direction: str,
    mode: str,
) -> None:
    """Name a benchmark by its implementation, put it in ``group``, and record what it ran in ``extra_info``
    (with the CPU backend in use, for the fused op on CPU): the keys the report reads."""
    benchmark.group = group
    benchmark.name = impl_label(impl, device)
    benchmark.extra_info.update(
        suite=suite,
        impl=benchmark.name,
        device=device,
        shape_name=shape_name,
        shape=list(shape),
        dim=dim,
        dtype=dtype_name,
        direction=direction,
        mode=mode,
    )
    if impl == "fused" and device == "cpu":
        benchmark.extra_info["backend"] = cpu_backend()


def describe_vae_benchmark(benchmark, *, suite: str, impl: str, direction: str, mode: str) -> tuple[int, ...]:
    """``describe_benchmark`` for a CPU benchmark at the VAE's size, fp32 with the categories last, grouped as
    ``"<suite> cpu vae <shape> fp32 <direction> <mode>"``; returns the shape."""
    shape = SHAPES["vae"].cpu
    describe_benchmark(
        benchmark,
        suite=suite,
        group=f"{suite} cpu vae {shape} fp32 {direction} {mode}",
        impl=impl,
        device="cpu",
        shape_name="vae",
        shape=shape,
        dim=-1,
        dtype_name="fp32",
        direction=direction,
        mode=mode,
    )
    return shape


def record_throughput(benchmark, median: float | None, numel: int, nbytes: int) -> None:
    """Add elements/s and GB/s (from the median) to ``extra_info`` beside the raw counts."""
    benchmark.extra_info.update(numel=numel, bytes=nbytes)
    if median:
        benchmark.extra_info.update(elements_per_s=numel / median, gb_per_s=nbytes / median / 1e9)
