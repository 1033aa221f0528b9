"""Triton backend: one fused kernel per direction, and their launchers.

Forward, per logical row: Philox words -> uniforms -> Gumbel noise -> (x + g) / tau -> softmax ->
(hard) argmax -> exact one-hot. Eager PyTorch makes ~8 full-size passes over memory for this
(exponential_, log, add, div, softmax, max, scatter, the straight-through arithmetic); the kernel reads
the logits once (twice for rows longer than one block) and writes the output once, and stores no
noise: the backward regenerates it from the seed.

Each program handles a ``[BLOCK_R, BLOCK_K]`` tile: BLOCK_R logical rows by BLOCK_K categories.
Rows that fit one block are done in registers (``SINGLE_PASS``); longer rows loop over K with an
online max/sum (Milakov & Gimelshein 2018, arXiv:1805.02867) and a second pass to write. When the
categories are not the innermost dimension (``inner > 1``, e.g. the dVAE's (B, K, H, W) with
dim=1) consecutive rows are adjacent in memory, so a tall tile keeps the loads coalesced.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.random import randint4x, uint_to_uniform_float

from .reference import math_dtype

# Largest row handled in registers by one program, and the chunk used beyond it. A 16K tile is 32
# values a thread at 16 warps; ptxas fits it in 128 registers for sm_90 without spilling.
MAX_SINGLE_BLOCK = 16384
MULTI_BLOCK_K = 4096
# Rows are grouped until a tile holds this many elements, so small-K shapes such as (200000, 10)
# still give each program enough work to hide memory latency.
TILE_ELEMENTS = 4096
# The smallest nonzero contract uniform (2**-31 after rounding): u = 0 maps here, so g stays finite.
MIN_UNIFORM = tl.constexpr(4.6566127342e-10)


@triton.jit
def _contract_uniforms(seed, rows, col0, n_groups, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """Uniforms of the RNG contract for columns [col0, col0 + BLOCK_K) of ``rows``: [BLOCK_R, BLOCK_K] fp32.

    Element (r, c) takes word c % 4 of ``randint4x(seed, r * n_groups + c // 4)``: one Philox call
    yields the words of four neighbouring columns, which are interleaved back into column order.
    """
    groups = col0 // 4 + tl.arange(0, BLOCK_K // 4)
    counter = rows[:, None] * n_groups + groups[None, :]  # int64: rows are int64
    w0, w1, w2, w3 = randint4x(seed, counter)
    # join(join(w0, w2), join(w1, w3)) has shape [R, G, 2, 2] with [.., j, i] = w[2j + i].
    words = tl.join(tl.join(w0, w2), tl.join(w1, w3)).reshape(BLOCK_R, BLOCK_K)
    return uint_to_uniform_float(words)


@triton.jit
def _tile_offsets(rows, cols, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner):
    """Element offsets and in-bounds mask of a tile of the ``(outer, K, inner)`` view."""
    row_offsets = (rows // inner) * stride_outer + (rows % inner) * stride_inner
    offsets = row_offsets[:, None] + cols[None, :] * stride_col
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    return offsets, mask


@triton.jit
def _load_tile(
    ptr, rows, col0, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner, other,
    MATH_DTYPE: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Columns [col0, col0 + BLOCK_K) of ``rows`` of an ``(outer, K, inner)`` tensor, in MATH_DTYPE."""
    cols = col0 + tl.arange(0, BLOCK_K)
    offsets, mask = _tile_offsets(rows, cols, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner)
    return tl.load(ptr + offsets, mask=mask, other=other).to(MATH_DTYPE)


@triton.jit
def _store_tile(ptr, values, rows, col0, n_rows, n_cols, inner, BLOCK_K: tl.constexpr):
    """Store a tile into a contiguous ``(outer, K, inner)`` tensor, converting to its dtype."""
    cols = col0 + tl.arange(0, BLOCK_K)
    offsets, mask = _tile_offsets(rows, cols, n_rows, n_cols, inner, n_cols * inner, inner, 1)
    tl.store(ptr + offsets, values.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _perturbed_logits(
    x_ptr, seed, tau, rows, col0, n_rows, n_cols, n_groups, inner,
    stride_outer, stride_col, stride_inner,
    MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """``z = (x + g) / tau`` for columns [col0, col0 + BLOCK_K) of ``rows``, in MATH_DTYPE.

    Out-of-bounds elements are -inf, so they never win the max and add 0 to the sum.
    """
    x = _load_tile(
        x_ptr, rows, col0, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner, float("-inf"),
        MATH_DTYPE, BLOCK_K,
    )
    u = _contract_uniforms(seed, rows, col0, n_groups, BLOCK_R, BLOCK_K)
    g = -tl.log(-tl.log(tl.maximum(u, MIN_UNIFORM).to(MATH_DTYPE)))
    return (x + g) / tau


@triton.jit
def _safe_shift(row_max):
    """The max to subtract before exp: 0 for a row that has seen only -inf, where -inf - -inf is NaN."""
    return tl.where(row_max == float("-inf"), 0.0, row_max)


@triton.jit
def _row_stats(
    x_ptr, seed, tau, rows, n_rows, n_cols, n_groups, inner,
    stride_outer, stride_col, stride_inner,
    MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One pass over whole rows: the max of z, the sum of exp(z - max), the argmax, and whether the
    row is invalid (holds a NaN, or has no finite max), in which case softmax gives NaN.

    When the running max grows from m to m', the running sum is rescaled by exp(m - m').
    """
    row_max = tl.full((BLOCK_R,), float("-inf"), MATH_DTYPE)  # loop-carried, so typed up front
    row_sum = tl.zeros((BLOCK_R,), MATH_DTYPE)
    row_argmax = tl.zeros((BLOCK_R,), tl.int64)
    row_nans = tl.zeros((BLOCK_R,), tl.int32)
    for col0 in range(0, n_cols, BLOCK_K):
        z = _perturbed_logits(
            x_ptr, seed, tau, rows, col0, n_rows, n_cols, n_groups, inner,
            stride_outer, stride_col, stride_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
        )
        chunk_max, chunk_argmax = tl.max(z, axis=1, return_indices=True, return_indices_tie_break_left=True)
        new_max = tl.maximum(row_max, chunk_max)
        shift = _safe_shift(new_max)
        row_sum = row_sum * tl.exp(row_max - shift) + tl.sum(tl.exp(z - shift[:, None]), axis=1)
        # Strict '>' keeps the first index on ties, as torch.argmax does.
        row_argmax = tl.where(chunk_max > row_max, col0 + chunk_argmax, row_argmax)
        row_max = new_max
        row_nans += tl.sum((z != z).to(tl.int32), axis=1)
    return row_max, row_sum, row_argmax, _invalid_rows(row_max, row_nans)


@triton.jit
def _invalid_rows(row_max, row_nans):
    """Rows whose softmax is NaN: a NaN anywhere, or no finite max (all -inf, or a +inf)."""
    return (row_nans > 0) | (row_max == float("-inf")) | (row_max == float("inf"))


@triton.jit
def _softmax_in_registers(z):
    """Softmax over axis 1 of a tile holding whole rows, with its argmax and invalid-row mask.

    Invalid rows (see ``_invalid_rows``) are set to NaN explicitly: ``tl.max`` may skip NaNs.
    """
    row_max, row_argmax = tl.max(z, axis=1, return_indices=True, return_indices_tie_break_left=True)
    unnormalized = tl.exp(z - _safe_shift(row_max)[:, None])
    y = unnormalized / tl.sum(unnormalized, axis=1)[:, None]
    invalid = _invalid_rows(row_max, tl.sum((z != z).to(tl.int32), axis=1))
    return tl.where(invalid[:, None], float("nan"), y), row_argmax, invalid


@triton.jit
def _soft_sample_chunk(
    saved_ptr, seed, tau, rows, col0, n_rows, n_cols, n_groups, inner,
    stride_outer, stride_col, stride_inner, row_max, row_sum, invalid,
    RECOMPUTE: tl.constexpr, MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The soft sample y on one chunk: regenerated from logits + row stats, or loaded from ``saved``."""
    if RECOMPUTE:
        z = _perturbed_logits(
            saved_ptr, seed, tau, rows, col0, n_rows, n_cols, n_groups, inner,
            stride_outer, stride_col, stride_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
        )
        y = tl.exp(z - _safe_shift(row_max)[:, None]) / row_sum[:, None]
        y = tl.where(invalid[:, None], float("nan"), y)
    else:
        y = _load_tile(
            saved_ptr, rows, col0, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner, 0.0,
            MATH_DTYPE, BLOCK_K,
        )
    return y


@triton.jit
def _one_hot(cols, row_argmax, invalid):
    """Exact one-hot of ``row_argmax`` over a tile's columns; NaN on invalid rows, as softmax gives."""
    y = tl.where(cols[None, :] == row_argmax[:, None], 1.0, 0.0)
    return tl.where(invalid[:, None], float("nan"), y)


@triton.jit
def _gumbel_softmax_fwd_kernel(
    x_ptr,  # logits, (outer, K, inner) with any strides
    out_ptr,  # output, contiguous (outer, K, inner), logits' dtype
    seed_ptr,  # 0-dim int64 Philox seed; loaded here so the host never syncs on it
    tau_ptr,  # 0-dim fp64 temperature, read here: annealing tau never recompiles
    n_rows,  # outer * inner logical rows
    n_cols,  # K categories
    inner,  # size of the dimensions after the category dimension
    stride_outer, stride_col, stride_inner,  # logits strides, in elements
    HARD: tl.constexpr,  # write the one-hot of the argmax instead of the soft sample
    SINGLE_PASS: tl.constexpr,  # BLOCK_K >= K: whole rows in registers
    MATH_DTYPE: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)  # int64: rows * K may pass 2**31
    seed = tl.load(seed_ptr)
    tau = tl.load(tau_ptr).to(MATH_DTYPE)
    n_groups = (n_cols + 3) // 4
    if SINGLE_PASS:
        z = _perturbed_logits(
            x_ptr, seed, tau, rows, 0, n_rows, n_cols, n_groups, inner,
            stride_outer, stride_col, stride_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
        )
        y, row_argmax, invalid = _softmax_in_registers(z)
        if HARD:
            y = _one_hot(tl.arange(0, BLOCK_K), row_argmax, invalid)
        _store_tile(out_ptr, y, rows, 0, n_rows, n_cols, inner, BLOCK_K)
    else:
        row_max, row_sum, row_argmax, invalid = _row_stats(
            x_ptr, seed, tau, rows, n_rows, n_cols, n_groups, inner,
            stride_outer, stride_col, stride_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
        )
        for col0 in range(0, n_cols, BLOCK_K):
            if HARD:
                # The one-hot needs only the argmax: no second read of the logits.
                y = _one_hot(col0 + tl.arange(0, BLOCK_K), row_argmax, invalid)
            else:
                y = _soft_sample_chunk(
                    x_ptr, seed, tau, rows, col0, n_rows, n_cols, n_groups, inner,
                    stride_outer, stride_col, stride_inner, row_max, row_sum, invalid,
                    True, MATH_DTYPE, BLOCK_R, BLOCK_K,
                )
            _store_tile(out_ptr, y, rows, col0, n_rows, n_cols, inner, BLOCK_K)


@triton.jit
def _gumbel_softmax_bwd_kernel(
    dy_ptr,  # upstream gradient, (outer, K, inner) with any strides
    saved_ptr,  # the logits (RECOMPUTE) or the soft sample y, (outer, K, inner) with any strides
    dx_ptr,  # gradient w.r.t. the logits, contiguous (outer, K, inner)
    seed_ptr,  # 0-dim int64 Philox seed of the forward call
    tau_ptr,  # 0-dim fp64 temperature
    n_rows, n_cols, inner,
    stride_dy_outer, stride_dy_col, stride_dy_inner,
    stride_saved_outer, stride_saved_col, stride_saved_inner,
    RECOMPUTE: tl.constexpr,  # hard mode: regenerate y from the logits instead of reading it
    SINGLE_PASS: tl.constexpr,
    MATH_DTYPE: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    # Softmax Jacobian-vector product, with y = softmax(z) and z = (x + g) / tau:
    #   dL/dz_j = sum_i dy_i * y_i * (delta_ij - y_j) = y_j * (dy_j - sum_i dy_i * y_i)
    #   dL/dx_j = dL/dz_j / tau
    # The straight-through estimator of hard mode uses exactly this gradient of the soft sample.
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    seed = tl.load(seed_ptr)
    tau = tl.load(tau_ptr).to(MATH_DTYPE)
    n_groups = (n_cols + 3) // 4
    if SINGLE_PASS:
        if RECOMPUTE:
            z = _perturbed_logits(
                saved_ptr, seed, tau, rows, 0, n_rows, n_cols, n_groups, inner,
                stride_saved_outer, stride_saved_col, stride_saved_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
            )
            y, _, _ = _softmax_in_registers(z)
        else:
            y = _load_tile(
                saved_ptr, rows, 0, n_rows, n_cols, inner, stride_saved_outer, stride_saved_col,
                stride_saved_inner, 0.0, MATH_DTYPE, BLOCK_K,
            )
        dy = _load_tile(
            dy_ptr, rows, 0, n_rows, n_cols, inner, stride_dy_outer, stride_dy_col, stride_dy_inner, 0.0,
            MATH_DTYPE, BLOCK_K,
        )
        dx = y * (dy - tl.sum(dy * y, axis=1)[:, None]) / tau
        _store_tile(dx_ptr, dx, rows, 0, n_rows, n_cols, inner, BLOCK_K)
    else:
        # Rows longer than a block: (1, hard only) the row stats that regenerate y, (2) the dot
        # product sum(dy * y), (3) the gradient. y outside the row is exp(-inf) = 0.
        row_max = tl.zeros((BLOCK_R,), MATH_DTYPE)
        row_sum = tl.zeros((BLOCK_R,), MATH_DTYPE)
        invalid = tl.zeros((BLOCK_R,), tl.int1)
        if RECOMPUTE:
            row_max, row_sum, _, invalid = _row_stats(
                saved_ptr, seed, tau, rows, n_rows, n_cols, n_groups, inner,
                stride_saved_outer, stride_saved_col, stride_saved_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
            )
        dot = tl.zeros((BLOCK_R,), MATH_DTYPE)
        for write_pass in tl.static_range(2):
            for col0 in range(0, n_cols, BLOCK_K):
                y = _soft_sample_chunk(
                    saved_ptr, seed, tau, rows, col0, n_rows, n_cols, n_groups, inner,
                    stride_saved_outer, stride_saved_col, stride_saved_inner, row_max, row_sum, invalid,
                    RECOMPUTE, MATH_DTYPE, BLOCK_R, BLOCK_K,
                )
                dy = _load_tile(
                    dy_ptr, rows, col0, n_rows, n_cols, inner, stride_dy_outer, stride_dy_col,
                    stride_dy_inner, 0.0, MATH_DTYPE, BLOCK_K,
                )
                if write_pass == 0:
                    dot += tl.sum(dy * y, axis=1)
                else:
                    _store_tile(dx_ptr, y * (dy - dot[:, None]) / tau, rows, col0, n_rows, n_cols, inner, BLOCK_K)


# ----------------------------------------------------------------------------------------------
# Launchers. ``wrap`` is ``torch.library.wrap_triton`` when called from the custom op (so
# torch.compile can trace the launch); tests call the launchers directly with CPU tensors under
# TRITON_INTERPRET=1, where no wrapping is needed.
# ----------------------------------------------------------------------------------------------


def _no_wrap(kernel):
    return kernel


def launch_config(n_rows: int, n_cols: int, inner: int, fp64: bool = False) -> dict:
    """Block sizes for a problem: whole rows in registers when they fit, else chunks of K.

    With ``inner > 1`` consecutive rows are adjacent in memory, so the tile is made tall (at least
    32 rows, 128 bytes of fp32) for coalesced loads, and K is chunked to keep the tile small. fp64 math
    takes two registers a value, so its tiles are half as large.
    """
    shrink = 2 if fp64 else 1
    tile_elements = TILE_ELEMENTS // shrink
    full_k = max(4, triton.next_power_of_2(n_cols))
    if inner == 1:
        block_k = full_k if full_k <= MAX_SINGLE_BLOCK // shrink else MULTI_BLOCK_K // shrink
        block_r = tile_elements // block_k
    else:
        # At most 64 categories wide: 32 x 64 when K is long (the backward's recomputing pass
        # spills at 32 x 128), as many rows as fit otherwise.
        block_k = min(full_k, 64)
        block_r = 32 if block_k == 64 else tile_elements // block_k
    block_r = max(1, min(block_r, triton.next_power_of_2(n_rows)))
    # About 8 values a thread: the Philox words and int64 counters make each element costly in
    # registers, and at 32 a thread ptxas spills (sm_90, see tests/test_triton_compile.py).
    num_warps = min(16, max(4, block_r * block_k * shrink // 256))
    return dict(BLOCK_R=block_r, BLOCK_K=block_k, SINGLE_PASS=block_k >= n_cols, num_warps=num_warps)


_TL_DTYPES = {torch.float32: tl.float32, torch.float64: tl.float64}


def _launch(kernel, inputs: tuple, seed, tau, wrap, **constexprs):
    """Launch ``kernel(*inputs, out, seed, tau, n_rows, n_cols, inner, *strides of inputs)``.

    The last input (the logits, or the backward's saved tensor) fixes the result's shape and dtype.
    """
    like = inputs[-1]
    outer, n_cols, inner = like.shape
    out = like.new_empty(like.shape)
    if out.numel() == 0:
        return out
    n_rows = outer * inner
    math = math_dtype(like.dtype)
    config = launch_config(n_rows, n_cols, inner, fp64=math == torch.float64)
    strides = [stride for tensor in inputs for stride in tensor.stride()]
    wrap(kernel)[(triton.cdiv(n_rows, config["BLOCK_R"]),)](
        *inputs, out, seed, tau, n_rows, n_cols, inner, *strides,
        MATH_DTYPE=_TL_DTYPES[math], **config, **constexprs,
    )
    return out


def gumbel_softmax_fwd(logits, seed, tau, hard: bool, *, wrap=_no_wrap):
    """Launch the forward kernel on ``(outer, K, inner)`` logits; returns a contiguous sample."""
    return _launch(_gumbel_softmax_fwd_kernel, (logits,), seed, tau, wrap, HARD=hard)


def gumbel_softmax_bwd(grad, saved, seed, tau, recompute: bool, *, wrap=_no_wrap):
    """Launch the backward kernel; ``saved`` is the logits if ``recompute`` else the soft sample."""
    return _launch(_gumbel_softmax_bwd_kernel, (grad, saved), seed, tau, wrap, RECOMPUTE=recompute)


@triton.jit
def _contract_uniforms_kernel(
    seed_ptr,  # 0-dim int64 Philox seed
    rows_ptr,  # (n,) int64 logical row indices
    u_ptr,  # (n, K) fp32 output: the uniform of every element of those rows
    n_cols,
    BLOCK_K: tl.constexpr,
):
    # Exposes the forward kernel's own randomness (same helper, same tiling), so tests can check it
    # bit for bit against the golden words and feed it to the eager formula.
    pid = tl.program_id(0)
    rows = tl.load(rows_ptr + pid + tl.arange(0, 1))
    for col0 in range(0, n_cols, BLOCK_K):
        u = _contract_uniforms(tl.load(seed_ptr), rows, col0, (n_cols + 3) // 4, 1, BLOCK_K)
        cols = col0 + tl.arange(0, BLOCK_K)
        tl.store(u_ptr + pid * n_cols + cols[None, :], u, mask=cols[None, :] < n_cols)


def contract_uniforms(seed, rows, n_cols: int):
    """The contract uniforms the kernels use for ``rows`` (int64 tensor): ``(len(rows), K)`` fp32."""
    u = torch.empty((rows.numel(), n_cols), dtype=torch.float32, device=rows.device)
    block_k = min(MULTI_BLOCK_K, max(4, triton.next_power_of_2(n_cols)))
    _contract_uniforms_kernel[(rows.numel(),)](seed, rows, u, n_cols, BLOCK_K=block_k)
    return u
