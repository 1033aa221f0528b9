"""Tile helpers shared by every Triton op: addressing an ``(outer, K, inner)`` view, block sizes, launch.

Each program handles a ``[BLOCK_R, BLOCK_K]`` tile: BLOCK_R logical rows by BLOCK_K categories. When the
categories are not the innermost dimension (``inner > 1``, e.g. the dVAE's (B, K, H, W) with dim=1)
consecutive rows are adjacent in memory, so a tall tile keeps the loads coalesced.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language import core as tl_core

from ..reference.rng import math_dtype

# Largest row handled in registers by one program, and the chunk used beyond it. A 16K tile is 32
# values a thread at 16 warps; ptxas fits it for sm_90 without spilling (tests/_triton/test_compile.py).
MAX_SINGLE_BLOCK = 16384
MULTI_BLOCK_K = 4096
# Rows are grouped until a tile holds this many elements, so small-K shapes such as (200000, 10)
# still give each program enough work to hide memory latency.
TILE_ELEMENTS = 4096


@triton.jit
def tile_offsets(rows, cols, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner):
    """Element offsets and in-bounds mask of a tile of the ``(outer, K, inner)`` view."""
    row_offsets = (rows // inner) * stride_outer + (rows % inner) * stride_inner
    offsets = row_offsets[:, None] + cols[None, :] * stride_col
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    return offsets, mask


@triton.jit
def load_tile(
    ptr, rows, col0, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner, other,
    MATH_DTYPE: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Columns [col0, col0 + BLOCK_K) of ``rows`` of an ``(outer, K, inner)`` tensor, in MATH_DTYPE."""
    cols = col0 + tl.arange(0, BLOCK_K)
    offsets, mask = tile_offsets(rows, cols, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner)
    return tl.load(ptr + offsets, mask=mask, other=other).to(MATH_DTYPE)


@triton.jit
def logit_shift(x_max):
    """What a row's logits are shifted by before the noise is added: their max, or 0 where it is not finite
    (NaN, +-inf), as ``reference.row_shift``; such rows have no finite softmax and no draw anyway."""
    finite = (x_max == x_max) & (x_max != float("inf")) & (x_max != float("-inf"))
    return tl.where(finite, x_max, 0.0)


@triton.jit
def row_max_pass(
    x_ptr, rows, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner,
    SINGLE_PASS: tl.constexpr, MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """A first pass over whole ``rows``, chunk by chunk: their max logit, and their count of NaNs (which
    tl.maximum skips). SINGLE_PASS: the row fits one chunk.

    Both are accumulated elementwise and reduced after the loop: a row reduction carried through the loop and
    used more than once after it (as ``logit_shift`` uses the max) trips an assertion in Triton 3.8's
    OptimizeThreadLocality pass compiling for sm_90 (tests/_triton/test_compile.py), and this is the form that
    pass would produce anyway.
    """
    x_max = tl.full((BLOCK_R, BLOCK_K), float("-inf"), MATH_DTYPE)
    nans = tl.zeros((BLOCK_R, BLOCK_K), tl.int32)
    for col0 in range(0, BLOCK_K if SINGLE_PASS else n_cols, BLOCK_K):
        x = load_tile(
            x_ptr, rows, col0, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner, float("-inf"),
            MATH_DTYPE, BLOCK_K,
        )
        x_max = tl.maximum(x_max, x)
        nans += (x != x).to(tl.int32)
    return tl.max(x_max, axis=1), tl.sum(nans, axis=1)


@triton.jit
def undefined_rows(row_max, row_nans):
    """Rows with nothing to draw: a NaN, or no finite max (all -inf, or a +inf), where softmax is NaN."""
    return (row_nans > 0) | (row_max == float("-inf")) | (row_max == float("inf"))


@triton.jit
def store_tile(ptr, values, rows, col0, n_rows, n_cols, inner, BLOCK_K: tl.constexpr):
    """Store a tile into a contiguous ``(outer, K, inner)`` tensor, converting to its dtype."""
    cols = col0 + tl.arange(0, BLOCK_K)
    offsets, mask = tile_offsets(rows, cols, n_rows, n_cols, inner, n_cols * inner, inner, 1)
    tl.store(ptr + offsets, values.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def scalar_argument(value):
    """A scalar kernel argument passed by value (a Python int or float: no tensor, no launch to make one) or
    as a pointer to a 0-dim tensor (loaded here, so the host never syncs on it): its value."""
    # A no-op when compiled; the interpreter passes Python scalars as they are. From triton.language.core, imported
    # as a module of its own so that the interpreter patches it: Triton 3.6 (the lent GPU machines') does not
    # export it as tl.to_tensor.
    value = tl_core.to_tensor(value)
    if value.dtype.is_ptr():
        value = tl.load(value)
    return value


@triton.jit
def checked_temperature(tau, MATH_DTYPE: tl.constexpr):
    """A temperature argument (a float, or a pointer to a 0-dim floating tensor) in MATH_DTYPE.

    NaN unless it is a normal, finite, positive number there (the range the host checks where it can):
    a tau the host cannot read without a sync (a CUDA tensor, a float inside a compiled graph) gives NaN
    samples, never silently wrong ones (tau = -1 would sample the argmin).
    """
    tau = scalar_argument(tau).to(MATH_DTYPE)
    if MATH_DTYPE == tl.float64:
        valid = (tau >= 2.2250738585072014e-308) & (tau <= 1.7976931348623157e308)
    else:
        valid = (tau >= 1.1754943508222875e-38) & (tau <= 3.4028234663852886e38)
    return tl.where(valid, tau, float("nan"))


def launch_config(
    n_rows: int,
    n_cols: int,
    inner: int,
    fp64: bool = False,
    *,
    tile_elements: int | None = None,
    max_block_r: int | None = None,
) -> dict:
    """Block sizes for a problem: whole rows in registers when they fit, else chunks of K.

    With ``inner > 1`` consecutive rows are adjacent in memory, so the tile is made tall (at least
    32 rows, 128 bytes of fp32) for coalesced loads, and K is chunked to keep the tile small. fp64 math
    takes two registers a value, so its tiles are half as large. A kernel that keeps more alive per element
    asks for smaller tiles (``tile_elements``, which also caps the row length held whole) or fewer rows
    (``max_block_r``).
    """
    shrink = 2 if fp64 else 1
    max_single_block = MAX_SINGLE_BLOCK if tile_elements is None else tile_elements
    tile_elements = (TILE_ELEMENTS if tile_elements is None else tile_elements) // shrink
    full_k = max(4, triton.next_power_of_2(n_cols))
    if inner == 1:
        max_block = max_single_block // shrink
        block_k = full_k if full_k <= max_block else min(MULTI_BLOCK_K // shrink, max_block)
        block_r = tile_elements // block_k
    else:
        # At most 64 categories wide: 32 x 64 when K is long (the backward's recomputing pass
        # spills at 32 x 128), as many rows as fit otherwise.
        block_k = min(full_k, 64)
        block_r = 32 if block_k == 64 else tile_elements // block_k
    block_r = max(1, min(block_r, triton.next_power_of_2(n_rows), max_block_r or block_r))
    # About 8 values a thread for 4K-element tiles: the Philox words and int64 counters make each element
    # costly in registers (at 4 warps, 32 a thread, the multi-pass kernels spilled). The 16K single block
    # is capped at 16 warps, so 32 values a thread: ptxas fits that one without spilling. Both measured for
    # sm_90 by tests/_triton/test_compile.py, which compiles every branch and asserts no spills.
    num_warps = min(16, max(4, block_r * block_k * shrink // 256))
    return dict(BLOCK_R=block_r, BLOCK_K=block_k, SINGLE_PASS=block_k >= n_cols, num_warps=num_warps)


TL_DTYPES = {torch.float32: tl.float32, torch.float64: tl.float64}


def launch_rowwise(kernel, inputs: tuple, seed, tau, *, out=None, config: dict | None = None, **named):
    """Launch ``kernel(*inputs, out, seed, tau, n_rows, n_cols, inner, *strides of inputs, **named)`` over row
    tiles: ``named`` holds the kernel's further arguments (its constexprs, an optional output pointer).

    The last input (the logits, or the backward's saved tensor) is the ``(outer, K, inner)`` problem and fixes
    the math dtype. ``out`` is the result (a new contiguous tensor like that input when not given: the sampling
    ops pass their index tensors), ``config`` the block sizes (``launch_config`` of the problem when not
    given). Returns ``out``.
    """
    like = inputs[-1]
    outer, n_cols, inner = like.shape
    if out is None:
        out = like.new_empty(like.shape)
    if out.numel() == 0:
        return out
    n_rows = outer * inner
    math = math_dtype(like.dtype)
    if config is None:
        config = launch_config(n_rows, n_cols, inner, fp64=math == torch.float64)
    strides = [stride for tensor in inputs for stride in tensor.stride()]
    kernel[(triton.cdiv(n_rows, config["BLOCK_R"]),)](
        *inputs, out, seed, tau, n_rows, n_cols, inner, *strides,
        MATH_DTYPE=TL_DTYPES[math], **config, **named,
    )
    return out
