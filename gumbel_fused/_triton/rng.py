"""The RNG contract in Triton (docs/DESIGN.md section 3): Philox words -> uniforms -> Gumbel noise.

Written once here; every op's kernels draw their noise through these helpers.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton.language.random import randint4x, uint_to_uniform_float

# The smallest nonzero contract uniform (2**-31 after rounding): u = 0 maps here, so g stays finite.
MIN_UNIFORM = tl.constexpr(4.6566127342e-10)


@triton.jit
def contract_uniforms(seed, rows, col0, n_groups, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
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
def gumbel_noise(seed, rows, col0, n_groups, MATH_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """Gumbel(0, 1) noise ``-log(-log u)`` of the contract for a ``[BLOCK_R, BLOCK_K]`` tile, in MATH_DTYPE."""
    u = contract_uniforms(seed, rows, col0, n_groups, BLOCK_R, BLOCK_K)
    return -tl.log(-tl.log(tl.maximum(u, MIN_UNIFORM).to(MATH_DTYPE)))
