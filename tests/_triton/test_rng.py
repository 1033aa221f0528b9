"""The Triton RNG helpers against the golden values Triton itself produced, and against the reference.

Probe kernels expose ``contract_uniforms`` and ``gumbel_from_uniform`` exactly as the op kernels call them
(same helpers, same tiling), so the check is on the kernels' own randomness, not on a re-implementation.
"""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from gumbel_fused._triton.rng import contract_uniforms, exponential_at, gumbel_from_uniform
from gumbel_fused.reference import (
    GUMBEL_CAP,
    UNIFORM_SCALE,
    exponential_from_uniform_ref,
    philox_words_ref,
    uniform_from_words_ref,
)

from ..conftest import TRITON_DEVICE
from ..helpers import golden_gumbel

PROBE_BLOCK_K = 4096


@triton.jit
def _contract_uniforms_probe_kernel(
    seed_ptr,  # 0-dim int64 Philox seed
    rows_ptr,  # (n,) int64 logical row indices
    u_ptr,  # (n, K) fp32 output: the uniform of every element of those rows
    n_cols,
    stream,  # the Philox stream (counter word 2): 0 for the sample's noise
    BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = tl.load(rows_ptr + pid + tl.arange(0, 1))
    for col0 in range(0, n_cols, BLOCK_K):
        u = contract_uniforms(tl.load(seed_ptr), rows, col0, (n_cols + 3) // 4, 1, BLOCK_K, stream)
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


@triton.jit
def _exponential_at_probe_kernel(seed_ptr, rows_ptr, cols_ptr, e_ptr, n_cols, stream, N: tl.constexpr):
    """E of ``stream`` at (rows[i], cols[i]), as Gumbel-Rao reads its sampled column's noise."""
    i = tl.arange(0, N)
    rows, cols = tl.load(rows_ptr + i), tl.load(cols_ptr + i)
    tl.store(e_ptr + i, exponential_at(tl.load(seed_ptr), rows, cols, (n_cols + 3) // 4, stream, tl.float32))


def kernel_uniforms(seed: int, rows: list[int] | torch.Tensor, n_cols: int, stream: int = 0) -> torch.Tensor:
    """The uniforms the kernels draw for ``rows`` of a K-column problem: ``(len(rows), K)`` fp32 on the CPU."""
    rows = torch.as_tensor(rows, dtype=torch.int64).to(TRITON_DEVICE)
    u = torch.empty((rows.numel(), n_cols), dtype=torch.float32, device=TRITON_DEVICE)
    block_k = min(PROBE_BLOCK_K, max(4, triton.next_power_of_2(n_cols)))
    seed = torch.tensor(seed, dtype=torch.int64, device=TRITON_DEVICE)
    _contract_uniforms_probe_kernel[(rows.numel(),)](seed, rows, u, n_cols, stream, BLOCK_K=block_k)
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


@pytest.mark.parametrize("stream", [1, 7, 2**32 - 1])
def test_kernel_streams_match_reference(stream):
    # Gumbel-Rao's repeats draw from streams 1, 2, ... (counter word 2); the reference's streams are
    # checked against Random123's known answers (tests/reference/test_rng.py).
    rows = torch.tensor([0, 3, 2**33 + 1], dtype=torch.int64)
    seed, n_cols = 0x0F1E_2D3C_4B5A_6978, 11
    want = uniform_from_words_ref(philox_words_ref(seed, rows, n_cols, stream))
    assert torch.equal(kernel_uniforms(seed, rows, n_cols, stream), want)
    assert not torch.equal(kernel_uniforms(seed, rows, n_cols, 0), want)
    cols = torch.tensor([0, 5, 10, 7], dtype=torch.int64)
    rows4 = torch.tensor([0, 3, 2**33 + 1, 3], dtype=torch.int64)
    e = torch.empty(4, dtype=torch.float32, device=TRITON_DEVICE)
    seed_tensor = torch.tensor(seed, device=TRITON_DEVICE)
    rows_dev, cols_dev = rows4.to(TRITON_DEVICE), cols.to(TRITON_DEVICE)
    _exponential_at_probe_kernel[(1,)](seed_tensor, rows_dev, cols_dev, e, n_cols, stream, N=4)
    u = uniform_from_words_ref(philox_words_ref(seed, rows4, n_cols, stream))[torch.arange(4), cols]
    # The contract fixes the words and u; E may differ from torch's log1p in the last bits.
    torch.testing.assert_close(e.cpu(), exponential_from_uniform_ref(u), rtol=4e-7, atol=0)
