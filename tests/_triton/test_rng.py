"""The Triton RNG helpers against the golden values Triton itself produced, and against the reference.

Probe kernels expose ``contract_uniforms`` and ``gumbel_from_uniform`` exactly as the op kernels call them
(same helpers, same tiling), so the check is on the kernels' own randomness, not on a re-implementation.
"""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from gumbel_fused._triton.rng import contract_uniforms, gumbel_from_uniform
from gumbel_fused.reference import GUMBEL_CAP, UNIFORM_SCALE, philox_words_ref, uniform_from_words_ref

from ..conftest import TRITON_DEVICE
from ..helpers import golden_gumbel

PROBE_BLOCK_K = 4096


@triton.jit
def _contract_uniforms_probe_kernel(
    seed_ptr,  # 0-dim int64 Philox seed
    rows_ptr,  # (n,) int64 logical row indices
    u_ptr,  # (n, K) fp32 output: the uniform of every element of those rows
    n_cols,
    BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = tl.load(rows_ptr + pid + tl.arange(0, 1))
    for col0 in range(0, n_cols, BLOCK_K):
        u = contract_uniforms(tl.load(seed_ptr), rows, col0, (n_cols + 3) // 4, 1, BLOCK_K)
        cols = col0 + tl.arange(0, BLOCK_K)
        tl.store(u_ptr + pid * n_cols + cols[None, :], u, mask=cols[None, :] < n_cols)


@triton.jit
def _gumbel_probe_kernel(u_ptr, g_ptr, n, MATH_DTYPE: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    u = tl.load(u_ptr + offsets, mask=offsets < n)
    tl.store(g_ptr + offsets, gumbel_from_uniform(u, MATH_DTYPE), mask=offsets < n)


def kernel_gumbel(u: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The kernels' Gumbel values of fp32 contract uniforms ``u`` (1-D), in the math ``dtype``, on the CPU."""
    u = u.to(TRITON_DEVICE)
    g = torch.empty(u.shape, dtype=dtype, device=TRITON_DEVICE)
    block = 1024
    math_dtype = tl.float64 if dtype == torch.float64 else tl.float32
    _gumbel_probe_kernel[(triton.cdiv(u.numel(), block),)](u, g, u.numel(), MATH_DTYPE=math_dtype, BLOCK=block)
    return g.cpu()


def kernel_uniforms(seed: int, rows: list[int] | torch.Tensor, n_cols: int) -> torch.Tensor:
    """The uniforms the kernels draw for ``rows`` of a K-column problem: ``(len(rows), K)`` fp32 on the CPU."""
    rows = torch.as_tensor(rows, dtype=torch.int64).to(TRITON_DEVICE)
    u = torch.empty((rows.numel(), n_cols), dtype=torch.float32, device=TRITON_DEVICE)
    block_k = min(PROBE_BLOCK_K, max(4, triton.next_power_of_2(n_cols)))
    seed = torch.tensor(seed, dtype=torch.int64, device=TRITON_DEVICE)
    _contract_uniforms_probe_kernel[(rows.numel(),)](seed, rows, u, n_cols, BLOCK_K=block_k)
    return u.cpu()


def test_kernel_uniforms_match_golden(rng_golden):
    for case in rng_golden["cases"]:
        u = kernel_uniforms(case["seed"], [r["row"] for r in case["rows"]], case["K"])
        for i, row in enumerate(case["rows"]):
            assert torch.equal(u[i], torch.tensor(row["u"], dtype=torch.float32)), (case["seed"], row["row"])


@pytest.mark.parametrize("n_cols", [1, 3, 4097, 9000])
def test_kernel_uniforms_match_reference(n_cols):
    # Beyond the golden rows: multi-chunk rows, a ragged last group, and a 64-bit row index.
    rows = torch.tensor([0, 5, 2**33 + 7], dtype=torch.int64)
    seed = 0x1234_5678_9ABC_DEF0
    want = uniform_from_words_ref(philox_words_ref(seed, rows, n_cols))
    assert torch.equal(kernel_uniforms(seed, rows, n_cols), want)


def test_kernel_gumbel_matches_golden(rng_golden):
    u, want = golden_gumbel(rng_golden)
    torch.testing.assert_close(kernel_gumbel(u, torch.float64), want, rtol=0, atol=1e-13)
    torch.testing.assert_close(kernel_gumbel(u, torch.float32).double(), want, rtol=0, atol=8e-6)


def test_kernel_gumbel_upper_tail():
    # The 2**16 smallest uniforms (g > 10.39): fp32 accuracy up to the cap, where v1 stopped at 16.64.
    u = uniform_from_words_ref(torch.arange(2**16, dtype=torch.int64))
    truth = -torch.log(-torch.log1p(-u.double().clamp_min(UNIFORM_SCALE)))
    g = kernel_gumbel(u, torch.float32).double()
    assert (g - truth).abs().max().item() < 4e-6
    assert g.max().item() == pytest.approx(GUMBEL_CAP, abs=4e-6)
