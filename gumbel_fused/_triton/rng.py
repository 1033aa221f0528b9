"""The RNG contract (v2) in Triton (docs/DESIGN.md section 3): Philox words -> uniforms -> Gumbel noise.

Written once here; every op's kernels draw their noise through these helpers.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton.language.random import philox, uint_to_uniform_float

# The smallest nonzero contract uniform (2**-31 after rounding): u = 0 maps here, so g stays finite (<= 21.49).
MIN_UNIFORM = tl.constexpr(4.6566127342e-10)


@triton.jit
def contract_words(seed, counter, stream):
    """The four Philox words of int64 ``counter`` on ``stream`` (0 <= stream < 2**32): key = the seed, counter
    words = (n lo, n hi, stream, 0). Stream 0 is exactly ``tl.randint4x(seed, counter)``, the sample's noise."""
    lo = counter.to(tl.uint32)
    hi = (counter >> 32).to(tl.uint32)
    zero = lo * 0
    return philox(seed, lo, hi, (zero + stream).to(tl.uint32), zero)  # an int64 stream argument truncates


@triton.jit
def contract_uniforms(seed, rows, col0, n_groups, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, stream=0):
    """Uniforms of the RNG contract for columns [col0, col0 + BLOCK_K) of ``rows``: [BLOCK_R, BLOCK_K] fp32.

    Element (r, c) takes word c % 4 of the Philox counter ``r * n_groups + c // 4`` on ``stream``: one Philox
    call yields the words of four neighbouring columns, which are interleaved back into column order.
    """
    groups = col0 // 4 + tl.arange(0, BLOCK_K // 4)
    counter = rows[:, None] * n_groups + groups[None, :]  # int64: rows are int64
    w0, w1, w2, w3 = contract_words(seed, counter, stream)
    # join(join(w0, w2), join(w1, w3)) has shape [R, G, 2, 2] with [.., j, i] = w[2j + i].
    words = tl.join(tl.join(w0, w2), tl.join(w1, w3)).reshape(BLOCK_R, BLOCK_K)
    return uint_to_uniform_float(words)


@triton.jit
def exponential_from_uniform(u):
    """``E = -log1p(-u)`` (fp32 or fp64, as ``u``), accurate for small u, in three additions and one log.

    Triton has no log1p outside libdevice, which its interpreter lacks, so: with w = 1 - u rounded, the
    rounding error c = (w - 1) + u is exact (both sums are exact by Sterbenz's lemma), and
    log(1 - u) = log(w - c) = log(w) - c / w + O(c^2). Using c for c / w errs by c * u / (1 - u), at most
    2^-24 relative to E for u <= 1/2, and c = 0 above. tl.log is libdevice's accurate logf on CUDA, not an
    approximation, so E keeps ~2 ulp relative accuracy where it is tiny: exactly where g is large.
    """
    w = 1.0 - u
    return ((w - 1.0) + u) - tl.log(w)


@triton.jit
def contract_exponential(u, MATH_DTYPE: tl.constexpr):
    """Contract v2's Exp(1) value ``E = -log1p(-u)`` of fp32 contract uniforms, in MATH_DTYPE; u = 0 counts as
    the smallest uniform, so E > 0 (``reference.exponential_from_uniform_ref``)."""
    return exponential_from_uniform(tl.maximum(u, MIN_UNIFORM).to(MATH_DTYPE))


@triton.jit
def gumbel_from_uniform(u, MATH_DTYPE: tl.constexpr):
    """Contract v2's Gumbel value ``-log(-log1p(-u))`` of fp32 contract uniforms, in MATH_DTYPE; u = 0 counts
    as the smallest uniform, so g <= 21.49 everywhere."""
    return -tl.log(contract_exponential(u, MATH_DTYPE))


@triton.jit
def gumbel_noise(seed, rows, col0, n_groups, MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """Gumbel(0, 1) noise of the contract for a ``[BLOCK_R, BLOCK_K]`` tile, in MATH_DTYPE."""
    return gumbel_from_uniform(contract_uniforms(seed, rows, col0, n_groups, BLOCK_R, BLOCK_K), MATH_DTYPE)


@triton.jit
def exponential_noise(
    seed, rows, col0, n_groups, stream, MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr
):
    """Exp(1) noise E = -log1p(-u) of ``stream`` for a ``[BLOCK_R, BLOCK_K]`` tile, in MATH_DTYPE (u = 0 counts
    as the smallest uniform): the noise a gradient estimator draws of its own (docs/DESIGN.md section 3)."""
    return contract_exponential(contract_uniforms(seed, rows, col0, n_groups, BLOCK_R, BLOCK_K, stream), MATH_DTYPE)


@triton.jit
def exponential_at(seed, rows, cols, n_groups, stream, MATH_DTYPE: tl.constexpr):
    """``exponential_noise`` at one column ``cols[i]`` of each row ``rows[i]``: a ``[BLOCK_R]`` vector."""
    w0, w1, w2, w3 = contract_words(seed, rows * n_groups + cols // 4, stream)
    lane = cols % 4
    word = tl.where(lane == 0, w0, tl.where(lane == 1, w1, tl.where(lane == 2, w2, w3)))
    return contract_exponential(uint_to_uniform_float(word), MATH_DTYPE)
