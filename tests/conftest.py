"""Shared test set-up: Triton runs under its interpreter on CPU when no GPU is present.

TRITON_INTERPRET must be set before Triton decorates the kernels, so before gumbel_fused is
imported anywhere in the session; pytest imports this file first.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hypothesis import settings  # noqa: E402

# CI has 2 cores and interprets Triton in NumPy: no per-example deadline, a fixed example count.
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DATA = Path(__file__).resolve().parent / "data"
# Triton runs on CUDA when there is a GPU, else interpreted on CPU tensors.
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.fixture(scope="session")
def rng_golden() -> dict:
    """Philox words and uniforms produced by Triton itself for the RNG contract (data/make_rng_golden.py)."""
    return json.loads((DATA / "rng_golden.json").read_text())


@pytest.fixture(autouse=True)
def _fresh_dynamo_cache():
    """Each test compiles from an empty dynamo cache: tests compile the same public functions with other
    constants (dim, estimator), and a shared cache would reach the recompile limit depending on test order."""
    yield
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()
