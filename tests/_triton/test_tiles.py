"""The Triton tile helpers: one case per branch of ``launch_config``, and the kernels' scalar arguments."""

from __future__ import annotations

import math

import pytest
import torch
import triton
import triton.language as tl

from gumbel_fused._triton import tiles


@pytest.mark.parametrize(
    "shape, single_pass, block_r",
    [
        ((200000, 10, 1), True, 256),  # tiny rows: many rows a program
        ((4096, 1024, 1), True, 4),
        ((64, 131072, 1), False, 1),  # longer than a block: online max/sum, two passes
        ((8, 8192, 1024), False, 32),  # dVAE layout: tall tiles, chunked K
        ((1, 5, 1), True, 1),  # never more rows a tile than there are rows
    ],
)
def test_launch_config_branches(shape, single_pass, block_r):
    outer, n_cols, inner = shape
    config = tiles.launch_config(outer * inner, n_cols, inner)
    assert config["SINGLE_PASS"] is single_pass
    assert config["BLOCK_R"] == block_r
    assert config["BLOCK_K"] % 4 == 0  # chunks hold whole Philox groups
    assert config["BLOCK_R"] * config["BLOCK_K"] <= tiles.MAX_SINGLE_BLOCK


@triton.jit
def _checked_temperature_kernel(tau, out_ptr, MATH_DTYPE: tl.constexpr):
    tl.store(out_ptr, tiles.checked_temperature(tau, MATH_DTYPE))


@pytest.mark.parametrize("math_dtype", [torch.float32, torch.float64])
def test_checked_temperature_reads_values_and_pointers_and_poisons_invalid_ones(math_dtype):
    info = torch.finfo(math_dtype)
    valid = [0.7, 1.0, 25.0]
    invalid = [-1.0, 0.0, math.nan, math.inf, -math.inf, info.tiny / 4]
    if math_dtype == torch.float32:
        invalid.append(1e39)  # beyond fp32: inf once converted
    tl_dtype = tiles.TL_DTYPES[math_dtype]
    for value in valid + invalid:
        # By value (Triton passes a Python float as fp32) and by pointer to a 0-dim tensor of either dtype.
        pointers = [(torch.tensor(value, dtype=dtype), dtype) for dtype in (torch.float64, torch.float32)]
        for tau, source in [(value, torch.float32), *pointers]:
            out = torch.empty((), dtype=math_dtype)
            _checked_temperature_kernel[(1,)](tau, out, tl_dtype)
            if value in valid:
                assert out.item() == torch.tensor(value, dtype=source).to(math_dtype).item()
            else:
                assert math.isnan(out.item()), (value, tau)
