"""benchmarks/gpu_check.py without a GPU: a test step stopped at its time limit, and a report of a run that
stopped before its timings (CI runs the whole script with --dry-run)."""

from __future__ import annotations

from .helpers import load_benchmark_script


def _load_gpu_check():
    return load_benchmark_script("gpu_check")


def test_tests_stopped_at_their_time_limit_say_so():
    tests = _load_gpu_check().run_tests(dry_run=True, timeout=0.01)
    assert tests["exit_code"] is None and tests["summary"] == "stopped after 0.01 s"


def test_report_of_a_run_stopped_before_its_timings():
    results = {"device_name": "NVIDIA H100", "dry_run": False, "torch": "2.11.0", "triton": "3.6.0",
               "date": "2026-12-07", "tests": {"summary": "1 failed, 9 passed", "exit_code": 1},
               "bandwidth": {}, "timings": []}  # fmt: skip
    text = _load_gpu_check().markdown(results)
    assert "Tests: `1 failed, 9 passed` (exit code 1)" in text and "`copy_` n/a GB/s" in text
