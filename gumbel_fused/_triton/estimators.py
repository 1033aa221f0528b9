"""Triton device functions of the hard sample's gradient estimators other than straight-through Gumbel-softmax.

The backward kernel (``gumbel_softmax.py``) calls :func:`estimator_grad` when its ESTIMATOR constexpr is
not ST. The formulas and their sources are in ``reference/estimators.py``; in short, with
J(p) dy = p * (dy - <dy, p>), k the sampled category and D its one-hot:

* PLAIN_ST:   J(q) dy / tau,                        q = softmax(x / tau)
* REINMAX:    (D + q) * (dy - (dy_k + <dy, q>) / 2) - J(pi) dy / 2,   pi = softmax(x)
* GST:        J(s) dy / tau,                        s = softmax(x' / tau), x' the gapped logits
* GUMBEL_RAO: (1/R) sum_r J(p_r) dy / tau,          p_r from R conditional Gumbel draws

Every softmax here has a maximum known before its pass: max(x) for q, pi and s (x'_k = max(x) is
the largest gapped logit), and the sampled category for p_r (its weight is exactly 1). So each takes one
pass for its sum and its dot product with dy, and one to write: no online rescaling. Rows are walked in
chunks of BLOCK_K, one chunk when the row fits (SINGLE_PASS), so one code path serves every row length.

The sampled category k of each row is the forward's, which the autograd keeps. Passes over a row: 1. max(x);
2. sums and dot products; 2b. Gumbel-Rao only: per repeat, its sum and dot product, kept in registers as
[BLOCK_R, RAO_BLOCK] columns; 3. the gradient.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ..reference.estimators import ESTIMATORS, GST_GAP, RAO_FIRST_STREAM
from .rng import exponential_at, exponential_noise
from .tiles import load_tile, logit_shift, row_max_pass, store_tile, undefined_rows

# ESTIMATOR constexpr values: positions in reference.estimators.ESTIMATORS.
ST = tl.constexpr(ESTIMATORS.index("st"))
REINMAX = tl.constexpr(ESTIMATORS.index("reinmax"))
GUMBEL_RAO = tl.constexpr(ESTIMATORS.index("gumbel_rao"))
GST = tl.constexpr(ESTIMATORS.index("gst"))
PLAIN_ST = tl.constexpr(ESTIMATORS.index("plain_st"))
_GAP = tl.constexpr(GST_GAP)
_FIRST_STREAM = tl.constexpr(RAO_FIRST_STREAM)


# Tile limits of the estimator backward (tiles.launch_config), rows chunked beyond them: its passes keep more
# alive per element than ST's (elementwise sums, x and dy reloaded a pass, Gumbel-Rao's noise). At the other
# kernels' 4096-element tiles ptxas spilled 56-384 bytes for sm_90 (Triton 3.8); at these, measured case by
# case over tests/_triton/test_compile.py's launch branches, none (ReinMax and GST each kept an 8-byte stack
# frame at the other one's size), except Gumbel-Rao since the seed and tau became by-value arguments: 8 to
# 72 bytes, which smaller tiles (512) did not remove (the test allows it that much, no more).
TILE_ELEMENTS = {REINMAX.value: 1024, GUMBEL_RAO.value: 1024, GST.value: 2048, PLAIN_ST.value: 1024}
# Gumbel-Rao's per-repeat statistics, BLOCK_R x RAO_BLOCK x 2 values in registers, stay under this many.
RAO_TABLE_ELEMENTS = 512


def estimator_tiling(estimator: int, rao_block: int) -> dict:
    """``launch_config``'s limits for the backward of ``estimator`` (its index in ESTIMATORS; none for ST)."""
    if estimator == ST:
        return {}
    return dict(tile_elements=TILE_ELEMENTS[estimator], max_block_r=max(1, RAO_TABLE_ELEMENTS // rao_block))


@triton.jit
def _load_sample(sample_ptr, rows, n_rows, inner, stride_outer, stride_inner):
    """The forward's category of each row, from its int64 ``(outer, 1, inner)`` tensor."""
    offsets = (rows // inner) * stride_outer + (rows % inner) * stride_inner
    return tl.load(sample_ptr + offsets, mask=rows < n_rows, other=0)


@triton.jit
def _first_softmax_weights(x, cols, k, shift, tau, ESTIMATOR: tl.constexpr):
    """Unnormalized softmax weights at most 1: q's exp((x - max) / tau) (PLAIN_ST, REINMAX), or the
    gapped s's, where x'_k - max = 0 and x'_j - max = min(x_j - max, -gap) (GST)."""
    shifted = x - shift[:, None]
    if ESTIMATOR == GST:
        shifted = tl.where(cols[None, :] == k[:, None], 0.0, tl.minimum(shifted, -_GAP))
    return tl.exp(shifted / tau)


@triton.jit
def _rao_weights(seed, rows, col0, n_groups, repeat, pi, e_k, cols, k, tau,
                 MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """Unnormalized p_r of one chunk: w_k = 1 and w_j = (pi_j E_k / (E_j + pi_j E_k)) ** (1 / tau), which is
    exp((z_j - z_k) / tau) for the top-down conditional Gumbels z (derivation: reference/estimators.py)."""
    e = exponential_noise(seed, rows, col0, n_groups, _FIRST_STREAM + repeat, MATH_DTYPE, BLOCK_R, BLOCK_K)
    pi_e_k = pi * e_k[:, None]
    ratio = tl.where(cols[None, :] == k[:, None], 1.0, pi_e_k / (e + pi_e_k))
    return tl.exp(tl.log(ratio) / tau)


@triton.jit
def _sampled_exponential(seed, rows, k, n_groups, repeat, MATH_DTYPE: tl.constexpr):
    """E_k of repeat ``repeat``: its noise at each row's sampled column, one Philox call a row (cheaper to
    draw again in the last pass than to keep in registers)."""
    return exponential_at(seed, rows, k, n_groups, _FIRST_STREAM + repeat, MATH_DTYPE)


@triton.jit
def _column(table, reps, repeat):
    """Column ``repeat`` of a [BLOCK_R, RAO_BLOCK] register table."""
    return tl.sum(tl.where(reps[None, :] == repeat, table, 0.0), axis=1)


@triton.jit
def estimator_grad(
    dy_ptr, x_ptr, sample_ptr, dx_ptr, seed, tau, rows, n_rows, n_cols, n_groups, inner,
    sd0, sd1, sd2,  # strides of dy
    sx0, sx1, sx2,  # strides of the logits
    ss0, ss2,  # strides of the sample's outer and inner dimensions
    rao_samples,  # R, the conditional draws of GUMBEL_RAO
    ESTIMATOR: tl.constexpr, RAO_BLOCK: tl.constexpr,  # RAO_BLOCK >= R, a power of 2
    MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """dL/dx of ``rows`` under ESTIMATOR, stored contiguously at ``dx_ptr``; NaN on invalid rows."""
    # Pass 1: the shift m, and the invalid rows (a NaN, or no finite max: their forward is NaN).
    x_max, nans = row_max_pass(x_ptr, rows, n_rows, n_cols, inner, sx0, sx1, sx2, False, MATH_DTYPE, BLOCK_R, BLOCK_K)
    shift, invalid = logit_shift(x_max), undefined_rows(x_max, nans)
    k = _load_sample(sample_ptr, rows, n_rows, inner, ss0, ss2)
    # Pass 2: sums and dot products with dy of the first softmax (q or s), of pi, and dy_k. Accumulated
    # elementwise and reduced after the loop: a row reduction carried through the loop and used more than
    # once after it trips an assertion in Triton 3.8's OptimizeThreadLocality pass for fp32 inputs
    # (`loopResult.hasOneUse()`, compiling for sm_90), and this is the form that pass would produce anyway.
    sum_a = tl.zeros((BLOCK_R, BLOCK_K), MATH_DTYPE)
    dot_a = tl.zeros((BLOCK_R, BLOCK_K), MATH_DTYPE)
    sum_pi = tl.zeros((BLOCK_R, BLOCK_K), MATH_DTYPE)
    dot_pi = tl.zeros((BLOCK_R, BLOCK_K), MATH_DTYPE)
    dy_k = tl.zeros((BLOCK_R, BLOCK_K), MATH_DTYPE)
    for col0 in range(0, n_cols, BLOCK_K):
        cols = col0 + tl.arange(0, BLOCK_K)
        x = load_tile(x_ptr, rows, col0, n_rows, n_cols, inner, sx0, sx1, sx2, float("-inf"), MATH_DTYPE, BLOCK_K)
        dy = load_tile(dy_ptr, rows, col0, n_rows, n_cols, inner, sd0, sd1, sd2, 0.0, MATH_DTYPE, BLOCK_K)
        if ESTIMATOR != GUMBEL_RAO:
            w = _first_softmax_weights(x, cols, k, shift, tau, ESTIMATOR)
            sum_a += w
            dot_a += dy * w
        if ESTIMATOR == REINMAX or ESTIMATOR == GUMBEL_RAO:
            w = tl.exp(x - shift[:, None])
            sum_pi += w
            dot_pi += dy * w
        if ESTIMATOR == REINMAX:
            dy_k += tl.where(cols[None, :] == k[:, None], dy, 0.0)
    sum_a, sum_pi, dy_k = tl.sum(sum_a, axis=1), tl.sum(sum_pi, axis=1), tl.sum(dy_k, axis=1)
    dot_a = tl.sum(dot_a, axis=1) / sum_a  # <dy, q> or <dy, s>; unused (0 / 0) for GUMBEL_RAO
    dot_pi = tl.sum(dot_pi, axis=1) / sum_pi  # <dy, pi>; unused (0 / 0) for PLAIN_ST and GST
    # Pass 2b (Gumbel-Rao): per repeat r, E_k and the sum and dot product of its weights.
    reps = tl.arange(0, RAO_BLOCK)
    sum_table = tl.zeros((BLOCK_R, RAO_BLOCK), MATH_DTYPE)
    dot_table = tl.zeros((BLOCK_R, RAO_BLOCK), MATH_DTYPE)
    if ESTIMATOR == GUMBEL_RAO:
        for repeat in range(rao_samples):
            e_k = _sampled_exponential(seed, rows, k, n_groups, repeat, MATH_DTYPE)
            sum_r = tl.zeros((BLOCK_R, BLOCK_K), MATH_DTYPE)
            dot_r = tl.zeros((BLOCK_R, BLOCK_K), MATH_DTYPE)
            for col0 in range(0, n_cols, BLOCK_K):
                cols = col0 + tl.arange(0, BLOCK_K)
                x = load_tile(
                    x_ptr, rows, col0, n_rows, n_cols, inner, sx0, sx1, sx2, float("-inf"), MATH_DTYPE, BLOCK_K
                )
                dy = load_tile(dy_ptr, rows, col0, n_rows, n_cols, inner, sd0, sd1, sd2, 0.0, MATH_DTYPE, BLOCK_K)
                pi = tl.exp(x - shift[:, None]) / sum_pi[:, None]
                w = _rao_weights(
                    seed, rows, col0, n_groups, repeat, pi, e_k, cols, k, tau, MATH_DTYPE, BLOCK_R, BLOCK_K
                )
                sum_r += w
                dot_r += dy * w
            sum_r, dot_r = tl.sum(sum_r, axis=1), tl.sum(dot_r, axis=1)
            here = reps[None, :] == repeat
            sum_table = tl.where(here, sum_r[:, None], sum_table)
            dot_table = tl.where(here, (dot_r / sum_r)[:, None], dot_table)
    # Pass 3: the gradient.
    for col0 in range(0, n_cols, BLOCK_K):
        cols = col0 + tl.arange(0, BLOCK_K)
        x = load_tile(x_ptr, rows, col0, n_rows, n_cols, inner, sx0, sx1, sx2, float("-inf"), MATH_DTYPE, BLOCK_K)
        dy = load_tile(dy_ptr, rows, col0, n_rows, n_cols, inner, sd0, sd1, sd2, 0.0, MATH_DTYPE, BLOCK_K)
        if ESTIMATOR == GUMBEL_RAO:
            pi = tl.exp(x - shift[:, None]) / sum_pi[:, None]
            dx = tl.zeros((BLOCK_R, BLOCK_K), MATH_DTYPE)
            for repeat in range(rao_samples):
                w = _rao_weights(
                    seed, rows, col0, n_groups, repeat, pi,
                    _sampled_exponential(seed, rows, k, n_groups, repeat, MATH_DTYPE), cols, k, tau,
                    MATH_DTYPE, BLOCK_R, BLOCK_K,
                )
                p = w / _column(sum_table, reps, repeat)[:, None]
                dx += p * (dy - _column(dot_table, reps, repeat)[:, None])
            dx = dx / (rao_samples * tau)
        else:
            p = _first_softmax_weights(x, cols, k, shift, tau, ESTIMATOR) / sum_a[:, None]
            if ESTIMATOR == REINMAX:
                one_hot = tl.where(cols[None, :] == k[:, None], 1.0, 0.0)
                pi = tl.exp(x - shift[:, None]) / sum_pi[:, None]
                heun = (one_hot + p) * (dy - ((dy_k + dot_a) / 2)[:, None])
                dx = heun - pi * (dy - dot_pi[:, None]) / 2
            else:
                dx = p * (dy - dot_a[:, None]) / tau
        store_tile(dx_ptr, tl.where(invalid[:, None], float("nan"), dx), rows, col0, n_rows, n_cols, inner, BLOCK_K)
