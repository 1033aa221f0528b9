"""The RNG contract in PyTorch (docs/DESIGN.md section 3): Philox words, uniforms and Gumbel noise.

Written with integer tensor ops, so it reproduces the Triton and C++ kernels word for word, and never
reads the seed on the host, so it stays traceable. Every op's reference draws its noise from here.

Tensors at this layer are the op-boundary layout: a 3-D view ``(outer, K, inner)`` with the categories
on ``K``. Logical row ``r = o * inner + i`` owns the elements ``(o, :, i)``.
"""

from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF
# Philox4x32 constants (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11; Random123).
_PHILOX_ROUND_A = 0xD2511F53
_PHILOX_ROUND_B = 0xCD9E8D57
_PHILOX_KEY_A = 0x9E3779B9
_PHILOX_KEY_B = 0xBB67AE85
_PHILOX_ROUNDS = 10
# Triton's `uint_to_uniform_float` scale: the largest fp32 s with (2**31 - 1) * s < 1 after rounding.
UNIFORM_SCALE = 4.6566127342e-10
# The largest Gumbel value of contract v2: g at the smallest positive uniform (UNIFORM_SCALE rounded to fp32),
# -log(-log1p(-u)) in fp64.
GUMBEL_CAP = 21.48756265673012


def _mulhilo32(a: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of ``a * b`` for uint32 values held in int64 tensors.

    The 64-bit product would overflow int64, so split ``a`` into 16-bit limbs: every partial
    product stays below 2**48 and the sums below 2**49, exact in int64.
    """
    t = (a >> 16) * b  # a_hi * b, < 2**48
    s = (t & 0xFFFF) * 65536 + (a & 0xFFFF) * b  # < 2**32 + 2**48
    return (t >> 16) + (s >> 32), s & _MASK32


def philox4x32_ref(seed: torch.Tensor | int, counter: torch.Tensor) -> torch.Tensor:
    """Philox4x32-10 words for a 64-bit ``seed`` and int64 ``counter`` tensor of any shape.

    Key = (seed lo, seed hi), counter = (n lo, n hi, 0, 0): exactly ``tl.randint4x(seed, n)``.
    ``seed`` may be a 0-dim int64 tensor: it is never read on the host, so this stays traceable.
    Returns int64 tensor of shape ``counter.shape + (4,)`` holding the uint32 words.
    """
    seed = torch.as_tensor(seed, dtype=torch.int64, device=counter.device)
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    c0 = counter & _MASK32
    c1 = (counter >> 32) & _MASK32
    c2 = torch.zeros_like(c0)
    c3 = torch.zeros_like(c0)
    for _ in range(_PHILOX_ROUNDS):
        hi_b, lo_b = _mulhilo32(c2, _PHILOX_ROUND_B)
        hi_a, lo_a = _mulhilo32(c0, _PHILOX_ROUND_A)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = (k0 + _PHILOX_KEY_A) & _MASK32
        k1 = (k1 + _PHILOX_KEY_B) & _MASK32
    return torch.stack((c0, c1, c2, c3), dim=-1)


def uniform_from_words_ref(words: torch.Tensor) -> torch.Tensor:
    """Triton's ``uint_to_uniform_float``: uint32 words (in int64) to fp32 uniforms in [0, 1)."""
    x = torch.where(words >= 2**31, words - 2**32, words)  # reinterpret as int32
    x = torch.where(x < 0, -x - 1, x)
    return x.to(torch.float32) * torch.tensor(UNIFORM_SCALE, dtype=torch.float32)


def philox_words_ref(seed: torch.Tensor | int, rows: torch.Tensor, n_cols: int) -> torch.Tensor:
    """The contract's word for every element of the given logical ``rows``: shape ``(len(rows), n_cols)``.

    Element (r, c) takes word ``c % 4`` of Philox counter ``n = r * ceil(K / 4) + c // 4``.
    """
    groups = (n_cols + 3) // 4
    rows = rows.to(torch.int64)
    counter = rows[:, None] * groups + torch.arange(groups, dtype=torch.int64, device=rows.device)
    return philox4x32_ref(seed, counter).flatten(1)[:, :n_cols]


def uniform_ref(
    seed: torch.Tensor | int, outer: int, n_cols: int, inner: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Contract uniforms laid out like the ``(outer, K, inner)`` logits (fp32)."""
    rows = torch.arange(outer * inner, dtype=torch.int64, device=device)
    u = uniform_from_words_ref(philox_words_ref(seed, rows, n_cols))
    return u.view(outer, inner, n_cols).transpose(1, 2)


def gumbel_from_uniform_ref(u: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gumbel(0, 1) noise of contract v2, ``g = -log(-log1p(-u))``, finite for every contract uniform.

    ``E = -log1p(-u)`` is an Exp(1) sample that is small where u is small, and small uniforms are where the
    contract's are finest (multiples of 2**-31), so the upper tail of g reaches ``GUMBEL_CAP`` = 21.49 (v1's
    ``-log(-log u)`` stopped at 16.64, where u's spacing near 1 is 2**-24). u = 0 is mapped to the smallest
    positive uniform; the largest, 1 - 2**-24, gives the lower end, g = -log(24 log 2) = -2.81.
    """
    u = u.clamp_min(UNIFORM_SCALE).to(dtype)
    return -torch.log(-torch.log1p(-u))


def math_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: fp32 for fp16/bf16/fp32, fp64 for fp64."""
    return torch.float64 if dtype == torch.float64 else torch.float32
