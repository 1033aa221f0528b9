"""Triton ``gumbel_max``: one categorical draw per row, and the helpers ``gumbel_topk`` shares.

Per row: Philox words -> uniforms -> Gumbel noise -> z = (x - m) / T + g -> running argmax, with m the row
max of x (``tiles.logit_shift``, as ``reference.row_shift``: unshifted, fp32's spacing at |x| = 1e8 swallows g).
Eager Gumbel-max makes four full-size passes (the noise, the division, the add, the argmax) and
torch.multinomial three (softmax, its cumulative sum, the search); this kernel reads the logits once for m and
once for the keys (the second read from cache) and writes one int64 a row: no softmax, no noise tensor, no
one-hot. Rows of any length: the row is walked in BLOCK_K chunks with the running argmax, after a first pass over
the chunks for m (``tiles.row_max_pass``). Tiles and launch configuration: ``tiles.py``; noise: ``rng.py``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .rng import gumbel_noise
from .tiles import (
    checked_temperature,
    launch_rowwise,
    load_tile,
    logit_shift,
    row_max_pass,
    scalar_argument,
    undefined_rows,
)


@triton.jit
def sampling_scores(
    x_ptr, seed, temperature, shift, rows, col0, n_rows, n_cols, n_groups, inner,
    stride_outer, stride_col, stride_inner,
    MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """``z = (x - m) / T + g`` for columns [col0, col0 + BLOCK_K) of ``rows``, in MATH_DTYPE, with m = ``shift``
    (``tiles.row_max_pass``); -inf out of bounds.

    The reference's order of operations, and a division, so that z rounds the same on every backend and, at
    T = 1, equals ``gumbel_softmax``'s ``((x - m) + g) / 1`` bit for bit.
    """
    x = load_tile(
        x_ptr, rows, col0, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner, float("-inf"),
        MATH_DTYPE, BLOCK_K,
    )
    return (x - shift[:, None]) / temperature + gumbel_noise(seed, rows, col0, n_groups, MATH_DTYPE, BLOCK_R, BLOCK_K)


@triton.jit
def count_nans(z):
    """NaNs a row of the tile: tl.max may skip them, so a row holding one is caught by this count."""
    return tl.sum((z != z).to(tl.int32), axis=1)


@triton.jit(do_not_specialize=["seed"])  # an int seed: no variant per value
def _gumbel_max_kernel(
    x_ptr,  # logits, (outer, K, inner) with any strides
    out_ptr,  # int64 draws, contiguous (outer, inner): row r = o * inner + i at offset r
    seed,  # Philox seed: an int, or a 0-dim int64 tensor (see tiles.scalar_argument)
    temperature,  # a float, or a 0-dim tensor, so a new one never recompiles
    n_rows,  # outer * inner logical rows
    n_cols,  # K categories
    inner,  # size of the dimensions after the category dimension
    stride_outer, stride_col, stride_inner,  # logits strides, in elements
    SINGLE_PASS: tl.constexpr,  # BLOCK_K >= K: one chunk, a loop the compiler drops
    MATH_DTYPE: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)  # int64: rows * K may pass 2**31
    seed = scalar_argument(seed)
    temperature = checked_temperature(temperature, MATH_DTYPE)
    n_groups = (n_cols + 3) // 4
    row_max = tl.full((BLOCK_R,), float("-inf"), MATH_DTYPE)
    row_argmax = tl.zeros((BLOCK_R,), tl.int64)
    row_nans = tl.zeros((BLOCK_R,), tl.int32)
    # m from a first pass, not the running max that gumbel_softmax re-bases its statistics by: keys compared
    # under one shift and re-based to another round differently from keys computed under the final shift, so
    # the draw would depend on BLOCK_K, and differ from the reference's in rare near-ties.
    x_max, _ = row_max_pass(
        x_ptr, rows, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner,
        SINGLE_PASS, MATH_DTYPE, BLOCK_R, BLOCK_K,
    )
    shift = logit_shift(x_max)
    for col0 in range(0, BLOCK_K if SINGLE_PASS else n_cols, BLOCK_K):
        z = sampling_scores(
            x_ptr, seed, temperature, shift, rows, col0, n_rows, n_cols, n_groups, inner,
            stride_outer, stride_col, stride_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
        )
        chunk_max, chunk_argmax = tl.max(z, axis=1, return_indices=True, return_indices_tie_break_left=True)
        # Strict '>' keeps the first index on ties across chunks, as torch.argmax and gumbel_softmax do.
        row_argmax = tl.where(chunk_max > row_max, col0 + chunk_argmax, row_argmax)
        row_max = tl.maximum(row_max, chunk_max)
        row_nans += count_nans(z)
    draws = tl.where(undefined_rows(row_max, row_nans), -1, row_argmax)
    tl.store(out_ptr + rows, draws, mask=rows < n_rows)


def gumbel_max(logits, seed, temperature):
    """Launch the kernel on ``(outer, K, inner)`` logits; returns the int64 ``(outer, inner)`` draws."""
    outer, _, inner = logits.shape
    out = torch.empty((outer, inner), dtype=torch.int64, device=logits.device)
    return launch_rowwise(_gumbel_max_kernel, (logits,), seed, temperature, out=out)
