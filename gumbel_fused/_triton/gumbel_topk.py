"""Triton ``gumbel_topk``: k draws without replacement per row, in draw order, by a partial selection.

Per row, the scores z = (x - m) / T + g of ``gumbel_max`` (m: ``tiles.row_max_pass``'s first pass) are walked in
BLOCK_K chunks while a buffer of the best K_PAD (= next power of 2 of k) pairs (z, column) seen so far stays in
registers, unsorted. A chunk element enters when it beats the buffer's worst; entrants are taken largest first,
each replacing the worst. Why this and not a sorting network: in a row in random order the i-th element enters
with probability about k / i, so a row of V has about k (1 + ln(V / k)) entrants in all (~440 for k = 50, V =
128K), and each costs one max over a chunk and one min over the buffer: about 3 (BLOCK_K + K_PAD) operations. At
BLOCK_K = 1024 that is ~12% of the noise's own work for that row, where a bitonic top-k of every chunk
(``tl.topk``) would cost ~25 compare-exchanges an element. The buffer is put in draw order at the end (k
extractions).

Draw order: a larger z first, and on equal z the lower column, as ``gumbel_max`` and the reference's stable
sort. -inf never enters (an entrant must beat the worst, which starts at -inf), so slots beyond the drawable
categories keep the initial column -1; undefined rows (a NaN, or no finite max) are -1 throughout.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference.gumbel_topk import gumbel_topk_ref
from .gumbel_max import count_nans, sampling_scores
from .tiles import (
    TILE_ELEMENTS,
    checked_temperature,
    launch_config,
    launch_rowwise,
    logit_shift,
    row_max_pass,
    scalar_argument,
    undefined_rows,
)

# Largest k the kernel holds in registers; beyond it the launcher sorts with the reference (see gumbel_topk).
MAX_FUSED_K = 4096
# Chunk length: each entrant costs a pass over one chunk, so chunks are short (see the module docstring).
TOPK_BLOCK_K = 1024


@triton.jit
def _last_in_draw_order(best_z, best_col, slots):
    """Per row, the buffer's (z, slot) drawn last: the smallest z, and of equal ones the highest column. Three
    plain reductions rather than one tl.reduce with a custom combine (which the interpreter runs element by
    element in Python)."""
    worst_z = tl.min(best_z, axis=1)
    tied = best_z == worst_z[:, None]
    worst_col = tl.max(tl.where(tied, best_col, -2), axis=1)
    worst_slot = tl.max(tl.where(tied & (best_col == worst_col[:, None]), slots, -1), axis=1)
    return worst_z, worst_slot


@triton.jit
def _first_in_draw_order(best_z, best_col, slots):
    """Per row, the buffer's (column, slot) drawn first: the largest z, and of equal ones the lowest column."""
    first_z = tl.max(best_z, axis=1)
    tied = best_z == first_z[:, None]
    first_col = tl.min(tl.where(tied, best_col, 2**31 - 1), axis=1)
    first_slot = tl.max(tl.where(tied & (best_col == first_col[:, None]), slots, -1), axis=1)
    return first_col, first_slot


@triton.jit(do_not_specialize=["seed"])  # an int seed: no variant per value
def _gumbel_topk_kernel(
    x_ptr,  # logits, (outer, K, inner) with any strides
    out_ptr,  # int64 draws, contiguous (outer, k, inner)
    seed,  # Philox seed: an int, or a 0-dim int64 tensor
    temperature,  # a float, or a 0-dim tensor
    n_rows,  # outer * inner logical rows
    n_cols,  # K categories
    inner,  # size of the dimensions after the category dimension
    stride_outer, stride_col, stride_inner,  # logits strides, in elements
    k,  # draws a row, 1 <= k <= min(K, K_PAD)
    MATH_DTYPE: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr,
    K_PAD: tl.constexpr,  # buffer length, a power of 2 >= k
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    seed = scalar_argument(seed)
    temperature = checked_temperature(temperature, MATH_DTYPE)
    n_groups = (n_cols + 3) // 4
    slots = tl.broadcast_to(tl.arange(0, K_PAD)[None, :], (BLOCK_R, K_PAD))
    best_z = tl.full((BLOCK_R, K_PAD), float("-inf"), MATH_DTYPE)
    best_col = tl.full((BLOCK_R, K_PAD), -1, tl.int32)  # K < 2**31 (the op's check)
    row_max = tl.full((BLOCK_R,), float("-inf"), MATH_DTYPE)
    row_nans = tl.zeros((BLOCK_R,), tl.int32)
    x_max, _ = row_max_pass(
        x_ptr, rows, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner, False, MATH_DTYPE, BLOCK_R, BLOCK_K,
    )
    shift = logit_shift(x_max)
    for col0 in range(0, n_cols, BLOCK_K):
        z = sampling_scores(
            x_ptr, seed, temperature, shift, rows, col0, n_rows, n_cols, n_groups, inner,
            stride_outer, stride_col, stride_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
        )
        row_max = tl.maximum(row_max, tl.max(z, axis=1))
        row_nans += count_nans(z)
        cols = col0 + tl.arange(0, BLOCK_K)[None, :]
        # Entrants come out largest first, lower column first on ties, so each one ranks after everything
        # already in the buffer with its z: a strict '>' against the worst is the exact rule.
        cand_z, cand_at = tl.max(z, axis=1, return_indices=True, return_indices_tie_break_left=True)
        worst_z, worst_slot = _last_in_draw_order(best_z, best_col, slots)
        enters = cand_z > worst_z
        while tl.max(enters.to(tl.int32), axis=0) > 0:
            replace = enters[:, None] & (slots == worst_slot[:, None])
            best_z = tl.where(replace, cand_z[:, None], best_z)
            best_col = tl.where(replace, col0 + cand_at[:, None], best_col)
            z = tl.where(enters[:, None] & (cols == col0 + cand_at[:, None]), float("-inf"), z)
            cand_z, cand_at = tl.max(z, axis=1, return_indices=True, return_indices_tie_break_left=True)
            worst_z, worst_slot = _last_in_draw_order(best_z, best_col, slots)
            enters = cand_z > worst_z
    undefined = undefined_rows(row_max, row_nans)
    # The buffer in draw order: k extractions of its first pair, each stored as the next slot of
    # out[o, :, i] (row r = o * inner + i; slots inner apart).
    row_out = out_ptr + (rows // inner) * k * inner + rows % inner
    for slot in range(0, k):
        first_col, first_slot = _first_in_draw_order(best_z, best_col, slots)
        tl.store(row_out + slot * inner, tl.where(undefined, -1, first_col).to(tl.int64), mask=rows < n_rows)
        taken = slots == first_slot[:, None]
        best_z = tl.where(taken, float("-inf"), best_z)
        best_col = tl.where(taken, -1, best_col)


def topk_launch_config(n_rows: int, n_cols: int, inner: int, k_pad: int, fp64: bool) -> dict:
    """``launch_config``'s tile, with chunks of at most TOPK_BLOCK_K and rows a tile cut so that the chunk and
    the K_PAD-pair buffer stay about TILE_ELEMENTS together."""
    config = launch_config(n_rows, n_cols, inner, fp64)
    block_k = min(config["BLOCK_K"], TOPK_BLOCK_K)
    block_r = min(config["BLOCK_R"], _floor_power_of_2(max(1, TILE_ELEMENTS // (block_k + k_pad))))
    # About 8 values a thread, as launch_config (fp64 takes two registers a value).
    values = block_r * (block_k + k_pad) * (2 if fp64 else 1)
    num_warps = min(16, max(4, _floor_power_of_2(values // 256)))
    return dict(BLOCK_R=block_r, BLOCK_K=block_k, K_PAD=k_pad, num_warps=num_warps)


def _floor_power_of_2(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


def gumbel_topk(logits, seed, temperature, k: int):
    """Launch the kernel on ``(outer, K, inner)`` logits; returns the int64 ``(outer, k, inner)`` draws.

    k above MAX_FUSED_K (thousands of ordered draws, an output as large as a sort's) goes through the
    reference on the logits' device: the same contract noise, a materialized score tensor and a stable sort.
    """
    outer, n_cols, inner = logits.shape
    if k > MAX_FUSED_K:
        return gumbel_topk_ref(logits, seed, temperature, k)
    out = torch.empty((outer, k, inner), dtype=torch.int64, device=logits.device)
    if k == 0:
        return out
    config = topk_launch_config(outer * inner, n_cols, inner, triton.next_power_of_2(k), logits.dtype == torch.float64)
    return launch_rowwise(_gumbel_topk_kernel, (logits,), seed, temperature, out=out, config=config, k=k)
