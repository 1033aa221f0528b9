"""Triton ``gumbel_topk``: k draws without replacement per row, in draw order, by a partial selection.

Per row, the scores z = x / T + g of ``gumbel_max`` are walked in BLOCK_K chunks while a buffer of the best
K_PAD (= next power of 2 of k) pairs (z, column) seen so far stays in registers, unsorted. A chunk element
enters when it beats the buffer's worst; entrants are taken largest first, each replacing the worst. Why
this and not a sorting network: in a row in random order the i-th element enters with probability about
k / i, so a row of V has about k (1 + ln(V / k)) entrants in all (~440 for k = 50, V = 128K), and each costs
one max over a chunk and one min over the buffer: about 3 (BLOCK_K + K_PAD) operations. At BLOCK_K = 1024
that is ~12% of the noise's own work for that row, where a bitonic top-k of every chunk (``tl.topk``) would
cost ~25 compare-exchanges an element. The buffer is put in draw order at the end (k extractions).

Draw order: a larger z first, and on equal z the lower column, as ``gumbel_max`` and the reference's stable
sort. -inf never enters (an entrant must beat the worst, which starts at -inf), so slots beyond the drawable
categories keep the initial column -1; undefined rows (a NaN, or no finite max) are -1 throughout.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference.gumbel_topk import gumbel_topk_ref
from .gumbel_max import count_nans, sampling_scores, undefined_rows
from .tiles import TILE_ELEMENTS, launch_config, launch_rowwise, store_tile

# Largest k the kernel holds in registers; beyond it the launcher sorts with the reference (see gumbel_topk).
MAX_FUSED_K = 4096
# Chunk length: each entrant costs a pass over one chunk, so chunks are short (see the module docstring).
TOPK_BLOCK_K = 1024


@triton.jit
def _first_in_draw_order(z_a, col_a, slot_a, z_b, col_b, slot_b):
    """Combine for tl.reduce: the pair drawn first (larger z; on a tie, the lower column)."""
    a_first = (z_a > z_b) | ((z_a == z_b) & (col_a < col_b))
    return tl.where(a_first, z_a, z_b), tl.where(a_first, col_a, col_b), tl.where(a_first, slot_a, slot_b)


@triton.jit
def _last_in_draw_order(z_a, col_a, slot_a, z_b, col_b, slot_b):
    """Combine for tl.reduce: the pair drawn last (smaller z; on a tie, the higher column)."""
    a_last = (z_a < z_b) | ((z_a == z_b) & (col_a > col_b))
    return tl.where(a_last, z_a, z_b), tl.where(a_last, col_a, col_b), tl.where(a_last, slot_a, slot_b)


@triton.jit
def _gumbel_topk_kernel(
    x_ptr,  # logits, (outer, K, inner) with any strides
    out_ptr,  # int64 draws, contiguous (outer, k, inner)
    seed_ptr,  # 0-dim int64 Philox seed
    temperature_ptr,  # 0-dim fp64 temperature
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
    seed = tl.load(seed_ptr)
    temperature = tl.load(temperature_ptr).to(MATH_DTYPE)
    n_groups = (n_cols + 3) // 4
    slots = tl.broadcast_to(tl.arange(0, K_PAD)[None, :], (BLOCK_R, K_PAD))
    best_z = tl.full((BLOCK_R, K_PAD), float("-inf"), MATH_DTYPE)
    best_col = tl.full((BLOCK_R, K_PAD), -1, tl.int64)
    row_max = tl.full((BLOCK_R,), float("-inf"), MATH_DTYPE)
    row_nans = tl.zeros((BLOCK_R,), tl.int32)
    for col0 in range(0, n_cols, BLOCK_K):
        z = sampling_scores(
            x_ptr, seed, temperature, rows, col0, n_rows, n_cols, n_groups, inner,
            stride_outer, stride_col, stride_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
        )
        row_max = tl.maximum(row_max, tl.max(z, axis=1))
        row_nans += count_nans(z)
        cols = col0 + tl.arange(0, BLOCK_K)[None, :]
        # Entrants come out largest first, lower column first on ties, so each one ranks after everything
        # already in the buffer with its z: a strict '>' against the worst is the exact rule.
        cand_z, cand_at = tl.max(z, axis=1, return_indices=True, return_indices_tie_break_left=True)
        worst_z, _, worst_slot = tl.reduce((best_z, best_col, slots), 1, _last_in_draw_order)
        enters = cand_z > worst_z
        while tl.max(enters.to(tl.int32), axis=0) > 0:
            replace = enters[:, None] & (slots == worst_slot[:, None])
            best_z = tl.where(replace, cand_z[:, None], best_z)
            best_col = tl.where(replace, col0 + cand_at[:, None], best_col)
            z = tl.where(enters[:, None] & (cols == col0 + cand_at[:, None]), float("-inf"), z)
            cand_z, cand_at = tl.max(z, axis=1, return_indices=True, return_indices_tie_break_left=True)
            worst_z, _, worst_slot = tl.reduce((best_z, best_col, slots), 1, _last_in_draw_order)
            enters = cand_z > worst_z
    undefined = undefined_rows(row_max, row_nans)
    # The buffer in draw order: k extractions of its first pair.
    draws = tl.full((BLOCK_R, K_PAD), -1, tl.int64)
    for slot in range(0, k):
        _, first_col, first_slot = tl.reduce((best_z, best_col, slots), 1, _first_in_draw_order)
        draws = tl.where(slots == slot, tl.where(undefined, -1, first_col)[:, None], draws)
        taken = slots == first_slot[:, None]
        best_z = tl.where(taken, float("-inf"), best_z)
        best_col = tl.where(taken, -1, best_col)
    store_tile(out_ptr, draws, rows, 0, n_rows, k, inner, K_PAD)


def topk_launch_config(n_rows: int, n_cols: int, inner: int, k_pad: int, fp64: bool) -> dict:
    """``launch_config``'s tile, with chunks of at most TOPK_BLOCK_K and rows a tile cut so that the chunk and
    the K_PAD-pair buffer stay about TILE_ELEMENTS together."""
    config = launch_config(n_rows, n_cols, inner, fp64)
    block_k = min(config["BLOCK_K"], TOPK_BLOCK_K)
    fit = max(1, TILE_ELEMENTS // (block_k + k_pad))
    block_r = min(config["BLOCK_R"], 1 << (fit.bit_length() - 1))  # powers of 2, so the min is one
    num_warps = min(16, max(4, block_r * (block_k + k_pad) * (2 if fp64 else 1) // 256))
    return dict(BLOCK_R=block_r, BLOCK_K=block_k, K_PAD=k_pad, num_warps=num_warps)


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
