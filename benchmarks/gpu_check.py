"""The one command to run first on a machine with a GPU: CUDA tests, GPU timings and achieved bandwidth.

    python benchmarks/gpu_check.py             # on a GPU, ~5 minutes: writes benchmarks/results/gpu-<device>.{json,md}
    python benchmarks/gpu_check.py --dry-run   # anywhere: every step on CPU (Triton interpreted), tiny sizes

Steps, each recorded in the results file:

1. the CUDA tests (``tests/test_cuda.py`` and the Triton, op-boundary and cross-backend suites, which run the
   Triton kernels on the GPU when one is present);
2. the device's bandwidth: its nominal peak from the memory clock and bus width, and what a plain
   ``copy_`` achieves, the practical ceiling for a kernel that reads and writes once;
3. timings of the fused ops against eager PyTorch at the VAE's size (100, 20, 10), where per-call overhead
   decides, and at 2**26 elements, where bandwidth decides; fp32 and bf16. GPU times come from
   ``triton.testing.do_bench`` (CUDA events, L2 flushed between runs), never from a host timer around a
   synchronize. Bandwidth is the nominal traffic of an ideal fused kernel (``_common.bytes_moved``) over
   the median time. Beside them, the host time per call of a loop of calls (``host_per_call``): the cost
   that decides small calls.

The dry run exists so that this script never rots while no GPU is at hand: CI runs it on CPU at tiny sizes
with a host timer (the fused op then runs its C++ kernels; the Triton kernels are covered, interpreted, by
the test suite). Its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CUDA_TESTS = ["tests/test_cuda.py", "tests/_triton", "tests/_ops", "tests/test_exact.py", "tests/test_statistics.py"]
# (name, shape, dim): the VAE's per-call-bound size, and 2**26 elements as short and as long rows.
FULL_SHAPES = [("vae", (100, 20, 10), -1), ("2^26 K=1024", (65536, 1024), -1), ("2^26 K=131072", (512, 131072), -1)]
DRY_SHAPES = [("vae", (100, 20, 10), -1), ("small K=1024", (16, 1024), -1)]
DTYPES = ("fp32", "bf16")
CASES = [("fwd", True), ("fwd", False), ("fwd+bwd", True), ("fwd+bwd", False)]  # (direction, hard)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="run every step on CPU at tiny sizes (no GPU needed)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the results")
    parser.add_argument("--skip-tests", action="store_true", help="timings only")
    parser.add_argument(
        "--test-timeout", type=float, default=360.0,
        help="seconds the tests may take before they are stopped and the timings run (default 360)",
    )
    return parser.parse_args(argv)


def run_tests(dry_run: bool, timeout: float) -> dict:
    """Run the CUDA-relevant suites in a subprocess; returns pytest's exit code (None when stopped after
    ``timeout`` seconds, so that a lent machine's limited time still reaches the timings), its summary line and
    the duration."""
    paths = ["tests/test_cuda.py"] if dry_run else CUDA_TESTS
    command = [sys.executable, "-m", "pytest", *paths, "-q", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        exit_code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as stopped:
        exit_code, stdout, stderr = None, stopped.stdout or "", f"stopped after {timeout:g} s"
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
    lines = [line for line in stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines and exit_code is not None else stderr[-500:]
    return {
        "paths": paths,
        "exit_code": exit_code,
        "summary": summary,
        "failures": [line for line in lines if line.startswith("FAILED")][:20],
        "seconds": round(time.perf_counter() - start, 1),
    }


def timer(device: str) -> Callable[[Callable[[], object]], float]:
    """Median seconds of one call: ``do_bench`` (CUDA events) on a GPU, a host timer in a dry run."""
    if device == "cuda":
        from triton.testing import do_bench

        return lambda fn: do_bench(fn, warmup=25, rep=200, return_mode="median") / 1e3

    def host_median(fn):
        fn()
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    return host_median


def host_per_call(torch, device: str, fn: Callable[[], object], calls: int = 100) -> float:
    """Seconds per call of ``calls`` back-to-back calls and one synchronize: what a loop of small calls sees.

    ``do_bench`` times the GPU's work alone; at the VAE's size a call's host side (argument checks, the seed,
    launches) can take longer than its kernels, and then the GPU waits on the host. This is the figure the
    per-call overhead decides (issue 11).
    """
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls


def device_bandwidth(torch, device: str, time_fn) -> dict:
    """Nominal peak (DDR: two transfers a clock) and the bandwidth of a large ``copy_`` (read + write)."""
    numel = 2**26 if device == "cuda" else 2**20
    src = torch.empty(numel, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    copy_gbs = 2 * src.nbytes / time_fn(lambda: dst.copy_(src)) / 1e9
    result = {"copy_gb_per_s": round(copy_gbs, 1)}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        peak = 2 * props.memory_clock_rate * 1e3 * props.memory_bus_width / 8 / 1e9
        result.update(name=props.name, peak_gb_per_s=round(peak, 1), sm_count=props.multi_processor_count)
    return result


def time_cases(torch, device: str, shapes, time_fn, peak_gbs: float | None, rows: list[dict],
               after_each: Callable[[], None]) -> None:
    """Fused against eager for every (shape, dtype, direction, mode): medians, speed-up and bandwidth, a row
    appended to ``rows`` for each, ``after_each`` called after it."""
    import torch.nn.functional as F

    # The checkout's own package and benchmark helpers: the script runs from a plain checkout, as on a lent GPU
    # machine, which gets a copy of the tree and no install (the tests' subprocess imports it from there too).
    sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
    from _common import DTYPES as BENCH_DTYPES
    from _common import bytes_moved, make_logits, step_fn

    from gumbel_fused import gumbel_softmax

    for shape_name, shape, dim in shapes:
        for dtype_name in DTYPES:
            dtype = BENCH_DTYPES[dtype_name]
            for direction, hard in CASES:
                x = make_logits(shape, dtype, device, requires_grad=direction == "fwd+bwd")
                fused_step = step_fn(gumbel_softmax, x, hard, dim, direction)
                eager_step = step_fn(F.gumbel_softmax, x, hard, dim, direction)
                fused, eager = time_fn(fused_step), time_fn(eager_step)
                fused_host = host_per_call(torch, device, fused_step)
                eager_host = host_per_call(torch, device, eager_step)
                gbs = bytes_moved(math.prod(shape), dtype, direction) / fused / 1e9
                rows.append(
                    {
                        "shape_name": shape_name,
                        "shape": list(shape),
                        "dtype": dtype_name,
                        "direction": direction,
                        "mode": "hard" if hard else "soft",
                        "fused_us": round(fused * 1e6, 2),
                        "eager_us": round(eager * 1e6, 2),
                        "speedup": round(eager / fused, 2),
                        "fused_host_us": round(fused_host * 1e6, 2),
                        "eager_host_us": round(eager_host * 1e6, 2),
                        "fused_gb_per_s": round(gbs, 1),
                        "fraction_of_peak": round(gbs / peak_gbs, 3) if peak_gbs else None,
                    }
                )
                print(f"  {shape_name:14s} {dtype_name} {direction:8s} {rows[-1]['mode']}: "
                      f"fused {rows[-1]['fused_us']:10.1f} us, eager {rows[-1]['eager_us']:10.1f} us, "
                      f"{rows[-1]['speedup']:6.2f}x, {rows[-1]['fused_gb_per_s']:8.1f} GB/s; a call in a loop: "
                      f"fused {rows[-1]['fused_host_us']:.1f} us, eager {rows[-1]['eager_host_us']:.1f} us", flush=True)
                after_each()


def markdown(results: dict) -> str:
    """The results as a Markdown report."""
    bandwidth = results["bandwidth"]
    lines = [
        f"# GPU check: {results['device_name']}",
        "",
        f"torch {results['torch']}, triton {results['triton']}, {results['date']}"
        + (" (DRY RUN on CPU: the figures mean nothing)" if results["dry_run"] else ""),
        "",
        f"Tests: `{results['tests'].get('summary', 'skipped')}` (exit code {results['tests'].get('exit_code')})",
        "",
        f"Bandwidth: nominal peak {bandwidth.get('peak_gb_per_s', 'n/a')} GB/s, "
        f"`copy_` {bandwidth.get('copy_gb_per_s', 'n/a')} GB/s",
        "",
        "GPU time by `do_bench`; a call in a loop: host time per call of 100 back-to-back calls and one synchronize",
        "(the host's side of a small call, which the GPU waits on when it is longer than the kernels).",
        "",
        "| shape | dtype | direction | mode | fused (us) | eager (us) | speed-up | fused GB/s | of peak "
        "| fused in a loop (us) | eager in a loop (us) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["timings"]:
        share = f"{row['fraction_of_peak']:.0%}" if row["fraction_of_peak"] is not None else "n/a"
        lines.append(
            f"| {row['shape_name']} {tuple(row['shape'])} | {row['dtype']} | {row['direction']} | {row['mode']} | "
            f"{row['fused_us']} | {row['eager_us']} | {row['speedup']}x | {row['fused_gb_per_s']} | {share} "
            f"| {row['fused_host_us']} | {row['eager_host_us']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import triton

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; use --dry-run to exercise the script on CPU", file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    time_fn = timer(device)
    device_name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    results = {
        "device_name": device_name,
        "dry_run": args.dry_run,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "tests": {},
        "bandwidth": {},
        "timings": [],
    }
    slug = "".join(c if c.isalnum() else "-" for c in device_name).strip("-")
    stem = "gpu-dry-run" if args.dry_run else f"gpu-{slug}"
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        # After every step: a run stopped at a lent machine's time limit keeps what it measured.
        (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
        (args.out / f"{stem}.md").write_text(markdown(results))

    if not args.skip_tests:
        results["tests"] = tests = run_tests(args.dry_run, args.test_timeout)
        print(f"tests: {tests['summary']} ({tests['seconds']} s)", flush=True)
        save()
    results["bandwidth"] = bandwidth = device_bandwidth(torch, device, time_fn)
    print(f"bandwidth: {bandwidth}", flush=True)
    save()
    shapes = DRY_SHAPES if args.dry_run else FULL_SHAPES
    time_cases(torch, device, shapes, time_fn, bandwidth.get("peak_gb_per_s"), results["timings"], save)
    save()
    print(f"wrote {args.out / stem}.json and .md")
    return 1 if results["tests"] and results["tests"]["exit_code"] != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
