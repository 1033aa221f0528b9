"""benchmarks/gpu_check.py without a GPU: a test step stopped at its time limit, and a report of a run that
stopped before its timings (CI runs the whole script with --dry-run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

GPU_CHECK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tests_stopped_at_their_time_limit_say_so():
    tests = _load_gpu_check().run_tests(dry_run=True, timeout=0.01)
    assert tests["exit_code"] is None and tests["summary"] == "stopped after 0.01 s"


def test_report_of_a_run_stopped_before_its_timings():
    results = {"device_name": "NVIDIA H100", "dry_run": False, "torch": "2.11.0", "triton": "3.6.0",
               "date": "2026-12-07", "tests": {"summary": "1 failed, 9 passed", "exit_code": 1},
               "bandwidth": {}, "timings": []}  # fmt: skip
    text = _load_gpu_check().markdown(results)
    assert "Tests: `1 failed, 9 passed` (exit code 1)" in text and "`copy_` n/a GB/s" in text
