"""Triton backend: one fused kernel per direction, and their launchers.

Forward, per logical row: Philox words -> uniforms -> Gumbel noise -> ((x - m) + g) / tau -> softmax ->
(hard) argmax -> exact one-hot. Eager PyTorch makes ~8 full-size passes over memory for this
(exponential_, log, add, div, softmax, max, scatter, the straight-through arithmetic); the kernel reads
the logits once (twice for rows longer than one block) and writes the output once, and stores no
noise: the backward regenerates it from the seed.

The logits are shifted by their row max before the noise is added, z = ((x - m) + g) / tau, as the
reference does (``reference.row_shift``: at |x| = 1e8 fp32's spacing is 8 and would swallow g).

Rows that fit one block are done in registers (``SINGLE_PASS``); longer rows loop over K with an
online max/sum (Milakov & Gimelshein 2018, arXiv:1805.02867) and a second pass to write. The online
pass shifts each chunk by the running max of x and re-bases its statistics when that max grows, and
adds the chunk sums with compensation, so that rows sum to 1 within a few ulps at any K. Tiles and
launch configuration: ``tiles.py``; noise: ``rng.py``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference.estimators import check_record_sample, check_sample, estimator_index
from ..reference.rng import math_dtype
from .estimators import GUMBEL_RAO, ST, estimator_grad, estimator_tiling
from .rng import gumbel_noise
from .tiles import (
    checked_temperature,
    launch_config,
    launch_rowwise,
    load_tile,
    logit_shift,
    scalar_argument,
    store_tile,
)


@triton.jit
def _logits_tile(
    x_ptr, rows, col0, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner,
    MATH_DTYPE: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Logits of columns [col0, col0 + BLOCK_K) of ``rows`` in MATH_DTYPE; -inf out of bounds, so they
    never win a max and add 0 to a sum."""
    return load_tile(
        x_ptr, rows, col0, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner, float("-inf"),
        MATH_DTYPE, BLOCK_K,
    )


@triton.jit
def _perturb(
    x, shift, seed, tau, rows, col0, n_groups, MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr
):
    """``z = ((x - shift) + g) / tau`` for a tile of logits ``x`` at columns [col0, col0 + BLOCK_K)."""
    return ((x - shift[:, None]) + gumbel_noise(seed, rows, col0, n_groups, MATH_DTYPE, BLOCK_R, BLOCK_K)) / tau


@triton.jit
def _perturbed_logits(
    x_ptr, seed, tau, shift, rows, col0, n_rows, n_cols, n_groups, inner,
    stride_outer, stride_col, stride_inner,
    MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """``z = ((x - shift) + g) / tau`` for columns [col0, col0 + BLOCK_K) of ``rows``, in MATH_DTYPE."""
    x = _logits_tile(
        x_ptr, rows, col0, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner, MATH_DTYPE, BLOCK_K,
    )
    return _perturb(x, shift, seed, tau, rows, col0, n_groups, MATH_DTYPE, BLOCK_R, BLOCK_K)


@triton.jit
def _whole_row_perturbed_logits(
    x_ptr, seed, tau, rows, n_rows, n_cols, n_groups, inner,
    stride_outer, stride_col, stride_inner,
    MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """z of rows that fit one tile (BLOCK_K >= K), shifted by their own max."""
    x = _logits_tile(
        x_ptr, rows, 0, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner, MATH_DTYPE, BLOCK_K,
    )
    return _perturb(x, logit_shift(tl.max(x, axis=1)), seed, tau, rows, 0, n_groups, MATH_DTYPE, BLOCK_R, BLOCK_K)


@triton.jit
def _safe_shift(row_max):
    """The max to subtract before exp: 0 for a row that has seen only -inf, where -inf - -inf is NaN."""
    return tl.where(row_max == float("-inf"), 0.0, row_max)


@triton.jit
def _compensated_add(total, compensation, value):
    """``total + value`` with its rounding error added to ``compensation`` (Neumaier's variant of Kahan
    summation: either operand may be the larger). The error of a sum of n terms is then O(1) ulps
    instead of O(n) (Higham, "Accuracy and Stability of Numerical Algorithms", 2002, section 4.3)."""
    new_total = total + value
    error = tl.where(tl.abs(total) >= tl.abs(value), (total - new_total) + value, (value - new_total) + total)
    return new_total, compensation + error


@triton.jit
def _row_stats(
    x_ptr, seed, tau, rows, n_rows, n_cols, n_groups, inner,
    stride_outer, stride_col, stride_inner,
    MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One pass over whole rows: the logit shift, the max of z, the sum of exp(z - max), the argmax, and
    whether the row is invalid (holds a NaN, or has no finite max), in which case softmax gives NaN.

    Each chunk is shifted by the running max of x. When that grows from s to s', the z seen so far were
    (s' - s) / tau too high: the running max of z is lowered by that, and the sum of exp(z - max), which
    a common shift of z leaves alone, is kept. When the max of z grows from m to m', the sum is rescaled
    by exp(m - m'). The chunk sums are added with compensation: a plain running sum would add K / BLOCK_K
    rounding errors (4096 at K = 2**24), each up to half an ulp of the total.
    """
    x_max = tl.full((BLOCK_R,), float("-inf"), MATH_DTYPE)  # loop-carried, so typed up front
    shift = tl.zeros((BLOCK_R,), MATH_DTYPE)
    row_max = tl.full((BLOCK_R,), float("-inf"), MATH_DTYPE)
    row_sum = tl.zeros((BLOCK_R,), MATH_DTYPE)
    row_sum_error = tl.zeros((BLOCK_R,), MATH_DTYPE)
    row_argmax = tl.zeros((BLOCK_R,), tl.int64)
    row_nans = tl.zeros((BLOCK_R,), tl.int32)
    for col0 in range(0, n_cols, BLOCK_K):
        x = _logits_tile(
            x_ptr, rows, col0, n_rows, n_cols, inner, stride_outer, stride_col, stride_inner, MATH_DTYPE, BLOCK_K,
        )
        x_max = tl.maximum(x_max, tl.max(x, axis=1))
        new_shift = logit_shift(x_max)
        row_max -= (new_shift - shift) / tau  # -inf stays -inf: a finite shift never grows by inf
        shift = new_shift
        z = _perturb(x, shift, seed, tau, rows, col0, n_groups, MATH_DTYPE, BLOCK_R, BLOCK_K)
        chunk_max, chunk_argmax = tl.max(z, axis=1, return_indices=True, return_indices_tie_break_left=True)
        new_max = tl.maximum(row_max, chunk_max)
        exp_shift = _safe_shift(new_max)
        rescale = tl.exp(row_max - exp_shift)
        row_sum, row_sum_error = _compensated_add(
            row_sum * rescale, row_sum_error * rescale, tl.sum(tl.exp(z - exp_shift[:, None]), axis=1)
        )
        # Strict '>' keeps the first index on ties, as torch.argmax does.
        row_argmax = tl.where(chunk_max > row_max, col0 + chunk_argmax, row_argmax)
        row_max = new_max
        row_nans += tl.sum((z != z).to(tl.int32), axis=1)
    return shift, row_max, row_sum + row_sum_error, row_argmax, _invalid_rows(row_max, row_nans)


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
    stride_outer, stride_col, stride_inner, shift, row_max, row_sum, invalid,
    RECOMPUTE: tl.constexpr, MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The soft sample y on one chunk: regenerated from logits + row stats, or loaded from ``saved``."""
    if RECOMPUTE:
        z = _perturbed_logits(
            saved_ptr, seed, tau, shift, rows, col0, n_rows, n_cols, n_groups, inner,
            stride_outer, stride_col, stride_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
        )
        y = tl.exp(z - _safe_shift(row_max)[:, None]) / row_sum[:, None]
        y = tl.where(invalid[:, None], float("nan"), y)
    else:
        y = load_tile(
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
def _record_sample(sample_ptr, rows, n_rows, row_argmax, invalid):
    """Each row's category into ``sample_ptr`` (int64, row r at r), when given: the index of its one, 0 for an
    invalid (all-NaN) row, as torch.argmax of the one-hot gives. Written by the launch that samples, so an
    estimator's forward needs no argmax launch of its own."""
    if sample_ptr is not None:
        tl.store(sample_ptr + rows, tl.where(invalid, 0, row_argmax), mask=rows < n_rows)


@triton.jit(do_not_specialize=["seed"])  # an int seed: no variant per value
def _gumbel_softmax_fwd_kernel(
    x_ptr,  # logits, (outer, K, inner) with any strides
    out_ptr,  # output, contiguous (outer, K, inner), logits' dtype
    seed,  # Philox seed: an int, or a 0-dim int64 tensor (see tiles.scalar_argument)
    tau,  # temperature: a float, or a 0-dim tensor, so annealing tau never recompiles
    n_rows,  # outer * inner logical rows
    n_cols,  # K categories
    inner,  # size of the dimensions after the category dimension
    stride_outer, stride_col, stride_inner,  # logits strides, in elements
    sample_ptr,  # each row's category, int64 contiguous (outer, 1, inner), or None (see _record_sample)
    HARD: tl.constexpr,  # write the one-hot of the argmax instead of the soft sample
    SINGLE_PASS: tl.constexpr,  # BLOCK_K >= K: whole rows in registers
    MATH_DTYPE: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)  # int64: rows * K may pass 2**31
    seed = scalar_argument(seed)
    tau = checked_temperature(tau, MATH_DTYPE)
    n_groups = (n_cols + 3) // 4
    if SINGLE_PASS:
        z = _whole_row_perturbed_logits(
            x_ptr, seed, tau, rows, n_rows, n_cols, n_groups, inner,
            stride_outer, stride_col, stride_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
        )
        y, row_argmax, invalid = _softmax_in_registers(z)
        if HARD:
            y = _one_hot(tl.arange(0, BLOCK_K), row_argmax, invalid)
        store_tile(out_ptr, y, rows, 0, n_rows, n_cols, inner, BLOCK_K)
        _record_sample(sample_ptr, rows, n_rows, row_argmax, invalid)
    else:
        shift, row_max, row_sum, row_argmax, invalid = _row_stats(
            x_ptr, seed, tau, rows, n_rows, n_cols, n_groups, inner,
            stride_outer, stride_col, stride_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
        )
        _record_sample(sample_ptr, rows, n_rows, row_argmax, invalid)
        for col0 in range(0, n_cols, BLOCK_K):
            if HARD:
                # The one-hot needs only the argmax: no second read of the logits.
                y = _one_hot(col0 + tl.arange(0, BLOCK_K), row_argmax, invalid)
            else:
                y = _soft_sample_chunk(
                    x_ptr, seed, tau, rows, col0, n_rows, n_cols, n_groups, inner,
                    stride_outer, stride_col, stride_inner, shift, row_max, row_sum, invalid,
                    True, MATH_DTYPE, BLOCK_R, BLOCK_K,
                )
            store_tile(out_ptr, y, rows, col0, n_rows, n_cols, inner, BLOCK_K)


@triton.jit(do_not_specialize=["seed"])  # an int seed: no variant per value
def _gumbel_softmax_bwd_kernel(
    dy_ptr,  # upstream gradient, (outer, K, inner) with any strides
    saved_ptr,  # the logits (RECOMPUTE) or the soft sample y, (outer, K, inner) with any strides
    dx_ptr,  # gradient w.r.t. the logits, contiguous (outer, K, inner)
    seed,  # Philox seed of the forward call: an int, or a 0-dim int64 tensor
    tau,  # temperature: a float, or a 0-dim tensor
    n_rows, n_cols, inner,
    stride_dy_outer, stride_dy_col, stride_dy_inner,
    stride_saved_outer, stride_saved_col, stride_saved_inner,
    sample_ptr,  # the forward's category a row, int64 (outer, 1, inner) (estimators but ST; else None)
    stride_sample_outer, stride_sample_inner,
    rao_samples,  # conditional draws of the GUMBEL_RAO estimator
    RECOMPUTE: tl.constexpr,  # hard mode: regenerate y from the logits instead of reading it
    ESTIMATOR: tl.constexpr,  # the hard sample's gradient: ST, or one of estimators.py (RECOMPUTE only)
    RAO_BLOCK: tl.constexpr,  # a power of 2 >= rao_samples (GUMBEL_RAO), else 1
    SINGLE_PASS: tl.constexpr,
    MATH_DTYPE: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    # Softmax Jacobian-vector product, with y = softmax(z) and z = ((x - m) + g) / tau:
    #   dL/dz_j = sum_i dy_i * y_i * (delta_ij - y_j) = y_j * (dy_j - sum_i dy_i * y_i)
    #   dL/dx_j = dL/dz_j / tau
    # The straight-through estimator of hard mode uses exactly this gradient of the soft sample.
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    seed = scalar_argument(seed)
    tau = checked_temperature(tau, MATH_DTYPE)
    n_groups = (n_cols + 3) // 4
    if ESTIMATOR != ST:
        estimator_grad(
            dy_ptr, saved_ptr, sample_ptr, dx_ptr, seed, tau, rows, n_rows, n_cols, n_groups, inner,
            stride_dy_outer, stride_dy_col, stride_dy_inner, stride_saved_outer, stride_saved_col, stride_saved_inner,
            stride_sample_outer, stride_sample_inner, rao_samples, ESTIMATOR, RAO_BLOCK, MATH_DTYPE, BLOCK_R, BLOCK_K,
        )
    elif SINGLE_PASS:
        if RECOMPUTE:
            z = _whole_row_perturbed_logits(
                saved_ptr, seed, tau, rows, n_rows, n_cols, n_groups, inner,
                stride_saved_outer, stride_saved_col, stride_saved_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
            )
            y, _, _ = _softmax_in_registers(z)
        else:
            y = load_tile(
                saved_ptr, rows, 0, n_rows, n_cols, inner, stride_saved_outer, stride_saved_col,
                stride_saved_inner, 0.0, MATH_DTYPE, BLOCK_K,
            )
        dy = load_tile(
            dy_ptr, rows, 0, n_rows, n_cols, inner, stride_dy_outer, stride_dy_col, stride_dy_inner, 0.0,
            MATH_DTYPE, BLOCK_K,
        )
        dx = y * (dy - tl.sum(dy * y, axis=1)[:, None]) / tau
        store_tile(dx_ptr, dx, rows, 0, n_rows, n_cols, inner, BLOCK_K)
    else:
        # Rows longer than a block: (1, hard only) the row stats that regenerate y, (2) the dot
        # product sum(dy * y), (3) the gradient. y outside the row is exp(-inf) = 0.
        shift = tl.zeros((BLOCK_R,), MATH_DTYPE)
        row_max = tl.zeros((BLOCK_R,), MATH_DTYPE)
        row_sum = tl.zeros((BLOCK_R,), MATH_DTYPE)
        invalid = tl.zeros((BLOCK_R,), tl.int1)
        if RECOMPUTE:
            shift, row_max, row_sum, _, invalid = _row_stats(
                saved_ptr, seed, tau, rows, n_rows, n_cols, n_groups, inner,
                stride_saved_outer, stride_saved_col, stride_saved_inner, MATH_DTYPE, BLOCK_R, BLOCK_K,
            )
        dot = tl.zeros((BLOCK_R,), MATH_DTYPE)
        for write_pass in tl.static_range(2):
            for col0 in range(0, n_cols, BLOCK_K):
                y = _soft_sample_chunk(
                    saved_ptr, seed, tau, rows, col0, n_rows, n_cols, n_groups, inner,
                    stride_saved_outer, stride_saved_col, stride_saved_inner, shift, row_max, row_sum, invalid,
                    RECOMPUTE, MATH_DTYPE, BLOCK_R, BLOCK_K,
                )
                dy = load_tile(
                    dy_ptr, rows, col0, n_rows, n_cols, inner, stride_dy_outer, stride_dy_col,
                    stride_dy_inner, 0.0, MATH_DTYPE, BLOCK_K,
                )
                if write_pass == 0:
                    dot += tl.sum(dy * y, axis=1)
                else:
                    store_tile(dx_ptr, y * (dy - dot[:, None]) / tau, rows, col0, n_rows, n_cols, inner, BLOCK_K)


def gumbel_softmax_fwd(
    logits, seed, tau, hard: bool, estimator: str = "st", rao_samples: int = 10, *, record_sample: bool = False
):
    """Launch the forward kernel on ``(outer, K, inner)`` logits; returns a contiguous sample. The sample does
    not depend on ``estimator``, which is only checked. With ``record_sample`` (hard only), returns
    ``(sample, category)``: the same launch also writes each row's category, int64 ``(outer, 1, inner)``, what
    ``sample_index`` finds in the one-hot (the estimators' backward takes it)."""
    fn = "gumbel_fused::gumbel_softmax_fwd"
    estimator_index(estimator, hard, rao_samples, fn=fn)
    check_record_sample(record_sample, hard, fn)
    category = logits.new_empty((logits.shape[0], 1, logits.shape[2]), dtype=torch.int64) if record_sample else None
    out = launch_rowwise(_gumbel_softmax_fwd_kernel, (logits,), seed, tau, sample_ptr=category, HARD=hard)
    return (out, category) if record_sample else out


def gumbel_softmax_bwd(
    grad, saved, seed, tau, recompute: bool, estimator: str = "st", rao_samples: int = 10, sample=None
):
    """Launch the backward kernel; ``saved`` is the logits if ``recompute`` else the soft sample. Estimators
    other than "st" take ``sample``, the forward's category a row (int64 ``(outer, 1, inner)``)."""
    fn = "gumbel_fused::gumbel_softmax_bwd"
    code = estimator_index(estimator, recompute, rao_samples, fn)
    check_sample(fn, estimator, sample)
    rao_block = triton.next_power_of_2(rao_samples) if code == GUMBEL_RAO else 1
    outer, n_cols, inner = saved.shape
    fp64 = math_dtype(saved.dtype) == torch.float64
    config = launch_config(outer * inner, n_cols, inner, fp64, **estimator_tiling(code, rao_block))
    sample_strides = (sample.stride(0), sample.stride(2)) if sample is not None else (0, 0)
    return launch_rowwise(
        _gumbel_softmax_bwd_kernel, (grad, saved), seed, tau, config=config,
        sample_ptr=sample, stride_sample_outer=sample_strides[0], stride_sample_inner=sample_strides[1],
        rao_samples=rao_samples, RECOMPUTE=recompute, ESTIMATOR=code, RAO_BLOCK=rao_block,
    )


