"""The Triton sampling kernels: chunking independence, the top-k buffer's limits, and compiling for sm_90.

Without a GPU these run the kernels in Triton's interpreter on CPU tensors (see tests/conftest.py); agreement
with the reference over shapes and dtypes is in tests/test_sampling.py.
"""

from __future__ import annotations

import pytest
import torch

from gumbel_fused._triton import gumbel_topk as topk_kernels
from gumbel_fused._triton import tiles

from ..helpers import run_gumbel_max, run_gumbel_topk
from .sm90 import assert_compiles_without_spills


def test_draws_do_not_depend_on_chunking(monkeypatch):
    # The contract fixes the noise per element, and the draws are exact functions of the scores.
    x = torch.randn(5, 600, 1)
    single_max, single_topk = run_gumbel_max("triton", x, 5, 0.5), run_gumbel_topk("triton", x, 5, 0.5, 9)
    monkeypatch.setattr(tiles, "MAX_SINGLE_BLOCK", 128)
    monkeypatch.setattr(tiles, "MULTI_BLOCK_K", 128)
    monkeypatch.setattr(topk_kernels, "TOPK_BLOCK_K", 64)
    assert not tiles.launch_config(5, 600, 1)["SINGLE_PASS"]
    assert torch.equal(run_gumbel_max("triton", x, 5, 0.5), single_max)
    assert torch.equal(run_gumbel_topk("triton", x, 5, 0.5, 9), single_topk)


def test_k_beyond_the_register_buffer_uses_the_reference(monkeypatch):
    x = torch.randn(3, 40, 2)
    monkeypatch.setattr(topk_kernels, "MAX_FUSED_K", 8)
    assert torch.equal(run_gumbel_topk("triton", x, 11, 0.8, 20), run_gumbel_topk("reference", x, 11, 0.8, 20))


@pytest.mark.parametrize("k_pad", [1, 64, 4096])
@pytest.mark.parametrize("problem", [(200000, 10, 1), (64, 128256, 1), (1, 128256, 1), (8, 8192, 1024)])
def test_topk_launch_config(problem, k_pad):
    outer, n_cols, inner = problem
    config = topk_kernels.topk_launch_config(outer * inner, n_cols, inner, k_pad, fp64=False)
    for name in ("BLOCK_R", "BLOCK_K", "K_PAD"):
        assert config[name] & (config[name] - 1) == 0, config
    assert config["BLOCK_K"] <= topk_kernels.TOPK_BLOCK_K and config["K_PAD"] == k_pad
    assert config["BLOCK_R"] == 1 or config["BLOCK_R"] * (config["BLOCK_K"] + k_pad) <= tiles.TILE_ELEMENTS
    assert 4 <= config["num_warps"] <= 16


# Compiles gumbel_max with launch_config's choice and gumbel_topk with topk_launch_config's, for one case
# (outer, K, inner, dtype, k).
_SCRIPT = """
import torch
from gumbel_fused._triton import gumbel_max as M, gumbel_topk as T, tiles

outer, n_cols, inner, dtype, k = json.loads(sys.argv[1])
results = {}
max_config = tiles.launch_config(outer * inner, n_cols, inner, fp64=dtype == "fp64")
max_warps = max_config.pop("num_warps")
topk_config = T.topk_launch_config(outer * inner, n_cols, inner, triton.next_power_of_2(k), fp64=dtype == "fp64")
topk_warps = topk_config.pop("num_warps")
for form, scalars in argument_forms(dtype, "temperature").items():
    pointers = dict(x_ptr="*" + dtype, out_ptr="*i64", **scalars)
    constexprs = dict(max_config, MATH_DTYPE=MATH[dtype])
    results[f"gumbel_max[{form}]"] = stack_bytes(M._gumbel_max_kernel, pointers, constexprs, max_warps)
    constexprs = dict(topk_config, MATH_DTYPE=MATH[dtype])
    results[f"gumbel_topk[{form}]"] = stack_bytes(T._gumbel_topk_kernel, pointers, constexprs, topk_warps)
print(json.dumps(results))
"""


@pytest.mark.parametrize(
    "case",
    [
        (64, 128256, 1, "fp32", 50),  # LLM vocabulary: chunked rows, a 64-slot buffer
        (4096, 1024, 1, "bf16", 1),  # whole rows, several a tile
        (200000, 10, 1, "fp32", 3),  # many tiny rows a tile
        (8, 8192, 1024, "fp32", 8),  # tall tiles over strided rows
        (1, 32000, 1, "fp32", 4096),  # the largest buffer
        (100, 200, 1, "fp64", 5),  # fp64 math
    ],
    ids=lambda c: "x".join(map(str, c[:3])) + f"-{c[3]}-k{c[4]}",
)
def test_sampling_kernels_compile_for_sm90(case):
    pytest.importorskip("triton.backends.nvidia")
    assert_compiles_without_spills(_SCRIPT, case)
