"""pytest configuration of the benchmark suites: quick mode, shared fixtures and machine details.

Run ``pytest benchmarks/`` for the full, manual run (~15 minutes on 2 CPU cores) and
``pytest benchmarks/ --bench-quick`` (or ``GUMBEL_BENCH_QUICK=1``) for the CI smoke run.
"""

from __future__ import annotations

import os
import platform

import pytest
import torch
from _common import BenchConfig, cpu_backend, quick_from_env

import gumbel_fused

# Each (shape, dtype, mode) gets a torch.compile of its own (see _common.compiled_gumbel_softmax), and the
# VAE benchmark compiles too: lift the process-wide limits so that no benchmark falls back to eager.
torch._dynamo.config.recompile_limit = 64
torch._dynamo.config.accumulated_recompile_limit = 4096


def pytest_addoption(parser):
    group = parser.getgroup("gumbel-fused benchmarks")
    group.addoption(
        "--bench-quick",
        action="store_true",
        default=False,
        help="small shapes and few rounds, so the suites run in a couple of minutes (CI); "
        "also enabled by GUMBEL_BENCH_QUICK=1",
    )
    group.addoption(
        "--bench-device",
        action="append",
        choices=("cpu", "cuda"),
        help="benchmark only on this device (repeatable); default: CPU, and CUDA when present",
    )


def pytest_collection_modifyitems(config, items):
    """Deselect the benchmarks of devices not asked for with ``--bench-device``."""
    wanted = config.getoption("--bench-device")
    if not wanted:
        return
    keep, drop = [], []
    for item in items:
        device = getattr(item, "callspec", None) and item.callspec.params.get("device")
        (drop if device and device not in wanted else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def bench_config(request) -> BenchConfig:
    """The run's settings: quick mode from ``--bench-quick`` or the environment."""
    return BenchConfig(quick=request.config.getoption("--bench-quick") or quick_from_env())


@pytest.fixture
def one_thread():
    """torch on one thread for the test: for suites that measure what does not scale with threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record what the numbers depend on; report.py prints it above the tables."""
    quick = config.getoption("--bench-quick") or quick_from_env()
    machine_info.update(
        cpu_model=_cpu_model(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        triton_version=_triton_version(),
        gumbel_fused_version=gumbel_fused.__version__,
        fused_cpu_backend=cpu_backend(),
        bench_mode="quick" if quick else "full",
        # Other work on the machine slows CPU timings (threads wait on descheduled peers): keep it on record.
        load_average=" ".join(f"{v:.2f}" for v in os.getloadavg()),
    )
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        machine_info.update(
            gpu_name=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda_version=torch.version.cuda,
        )
