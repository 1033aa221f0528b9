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


def _philox4x32_state(
    seed: torch.Tensor | int, counter: torch.Tensor, stream: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Philox4x32-10 of every ``counter`` (int64, any shape) on ``stream`` (a 64-bit number in counter words
    2-3, docs/DESIGN.md section 3) as two int64 tensors of shape ``(2, *counter.shape)``:
    ``multiplied`` holds words (0, 2) and ``carried`` words (1, 3), each in its low 32 bits (higher bits of
    ``carried`` are left over; mask or truncate them).

    The two words a round multiplies are stacked, and so are the two it XORs in, so that a round is six
    tensor ops however large the counter tensor, and those write into buffers allocated once (fresh large
    temporaries cost page faults).
    """
    seed = torch.as_tensor(seed, dtype=torch.int64, device=counter.device)
    # Round r's key is (k0 + r * KEY_A, k1 + r * KEY_B) mod 2**32.
    steps = torch.tensor([[r * _PHILOX_KEY_A, r * _PHILOX_KEY_B] for r in range(_PHILOX_ROUNDS)], device=counter.device)
    keys = (torch.stack((seed, seed >> 32)) + steps).bitwise_and_(_MASK32)
    low, high = counter & _MASK32, (counter >> 32) & _MASK32
    multiplied = torch.stack((low, torch.full_like(low, stream & _MASK32)))  # (c0, c2) = (n lo, stream lo)
    carried = torch.stack((high, torch.full_like(high, (stream >> 32) & _MASK32)))  # (c1, c3) = (n hi, stream hi)
    products = torch.empty_like(carried)
    c0, c2 = multiplied.unbind()
    rows = {id(buffer): buffer.unbind() for buffer in (carried, products)}  # the two buffers swap roles
    for key in keys.view(_PHILOX_ROUNDS, 2, *[1] * counter.dim()).unbind():
        # c0' = hi(c2 * B) ^ c1 ^ k0, c1' = lo(c2 * B), c2' = hi(c0 * A) ^ c3 ^ k1, c3' = lo(c0 * A). The products
        # are written crosswise, (c2 * B, c0 * A), to line up with (c1, c3). Both factors are below 2**32, so
        # each unsigned product fits 64 bits, and int64 multiplication, which wraps modulo 2**64 (two's
        # complement), holds its exact bits: the high word is bits 32-63, the low word bits 0-31.
        product_b, product_a = rows[id(products)]
        torch.mul(c2, _PHILOX_ROUND_B, out=product_b)
        torch.mul(c0, _PHILOX_ROUND_A, out=product_a)
        torch.bitwise_right_shift(products, 32, out=multiplied).bitwise_xor_(carried).bitwise_xor_(key)
        multiplied.bitwise_and_(_MASK32)
        # The products' low words are carried whole: they are only XORed into the next high words, masked after.
        carried, products = products, carried
    return multiplied, carried


def philox4x32_ref(seed: torch.Tensor | int, counter: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """Philox4x32-10 words for a 64-bit ``seed``, an int64 ``counter`` tensor of any shape and a 64-bit ``stream``.

    Key = (seed lo, seed hi), counter = (n lo, n hi, stream lo, stream hi). Stream 0 is the sample's noise,
    exactly ``tl.randint4x(seed, n)``; other streams are the noise some gradient estimators draw of their own.
    ``seed`` may be a 0-dim int64 tensor: it is never read on the host, so this stays traceable.
    Returns int64 tensor of shape ``counter.shape + (4,)`` holding the uint32 words.
    """
    multiplied, carried = _philox4x32_state(seed, counter, stream)
    carried = carried & _MASK32
    return torch.stack((multiplied[0], carried[0], multiplied[1], carried[1]), dim=-1)


def _uniform_from_low_bits(words: torch.Tensor) -> torch.Tensor:
    """``uint_to_uniform_float`` of the low 32 bits of an integer tensor, before the scaling: an int32
    tensor whose values times UNIFORM_SCALE (in fp32) are the uniforms."""
    x = words.to(torch.int32)  # the word read as int32: the conversion keeps the low 32 bits (C++20)
    return x.bitwise_xor_(x >> 31)  # x < 0 ? -x - 1 : x, since -x - 1 = ~x


def uniform_from_words_ref(words: torch.Tensor) -> torch.Tensor:
    """Triton's ``uint_to_uniform_float``: uint32 words (in int64) to fp32 uniforms in [0, 1)."""
    return _uniform_from_low_bits(words).to(torch.float32).mul_(UNIFORM_SCALE)


def _counters(rows: torch.Tensor, n_cols: int) -> torch.Tensor:
    """Philox counters ``n = r * ceil(K / 4) + c // 4`` of ``rows``: int64, ``(len(rows), ceil(K / 4))``."""
    groups = (n_cols + 3) // 4
    return rows.to(torch.int64)[:, None] * groups + torch.arange(groups, dtype=torch.int64, device=rows.device)


def philox_words_ref(seed: torch.Tensor | int, rows: torch.Tensor, n_cols: int, stream: int = 0) -> torch.Tensor:
    """The contract's word for every element of the given logical ``rows``: shape ``(len(rows), n_cols)``.

    Element (r, c) takes word ``c % 4`` of Philox counter ``n = r * ceil(K / 4) + c // 4`` of ``stream``.
    """
    return philox4x32_ref(seed, _counters(rows, n_cols), stream).flatten(1)[:, :n_cols]


# Counters uniform_ref draws at once: its int64 temporaries are then 1 MiB, and the Python overhead of its
# ~80 tensor ops is spread over 2**18 elements; larger chunks ran from memory rather than cache, smaller
# ones paid the per-op overhead (measured on 2 EPYC cores: benchmarks/test_bench_fallback.py).
_CHUNK_COUNTERS = 1 << 16


def uniform_ref(
    seed: torch.Tensor | int,
    outer: int,
    n_cols: int,
    inner: int,
    device: torch.device | str = "cpu",
    stream: int = 0,
) -> torch.Tensor:
    """Contract uniforms of ``stream`` laid out like the ``(outer, K, inner)`` logits (fp32).

    Drawn a chunk of rows at a time, so that the int64 Philox temporaries stay small; the words go
    straight to their uniforms, never through a stacked int64 copy.
    """
    n_rows, groups = outer * inner, (n_cols + 3) // 4
    # Word c % 4 = 2 * j + i of counter c // 4 lands at u[r, c // 4, j, i]: (j, i) = (0, 0), (0, 1), (1, 0),
    # (1, 1) for c0, c1, c2, c3, so `multiplied` (c0, c2) fills i = 0 and `carried` (c1, c3) fills i = 1.
    u = torch.empty((n_rows, groups, 2, 2), dtype=torch.float32, device=device)
    rows_per_chunk = max(1, _CHUNK_COUNTERS // max(1, groups))
    for first in range(0, n_rows, rows_per_chunk):
        rows = torch.arange(first, min(first + rows_per_chunk, n_rows), dtype=torch.int64, device=device)
        chunk = u[first : first + len(rows)]
        for i, words in enumerate(_philox4x32_state(seed, _counters(rows, n_cols), stream)):
            torch.mul(_uniform_from_low_bits(words).movedim(0, -1), UNIFORM_SCALE, out=chunk[:, :, :, i])
    return u.view(outer, inner, 4 * groups)[:, :, :n_cols].transpose(1, 2)


def gumbel_from_uniform_ref(u: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gumbel(0, 1) noise of contract v2, ``g = -log(-log1p(-u))``, finite for every contract uniform.

    ``E = -log1p(-u)`` is an Exp(1) sample that is small where u is small, and small uniforms are where the
    contract's are finest (multiples of 2**-31), so the upper tail of g reaches ``GUMBEL_CAP`` = 21.49 (v1's
    ``-log(-log u)`` stopped at 16.64, where u's spacing near 1 is 2**-24). u = 0 is mapped to the smallest
    positive uniform; the largest, 1 - 2**-24, gives the lower end, g = -log(24 log 2) = -2.81.
    """
    return exponential_from_uniform_ref(u, dtype).log_().neg_()  # in place: a temporary of its own


def exponential_from_uniform_ref(u: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Exp(1) noise of contract v2, ``E = -log1p(-u)`` in [4.66e-10, 16.64]: the E of ``g = -log(E)``, u = 0
    mapped to the smallest positive uniform. Gradient estimators that draw noise of their own use it."""
    return torch.log1p(u.clamp_min(UNIFORM_SCALE).to(dtype).neg_()).neg_()  # clamp_min made a new tensor


def math_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: fp32 for fp16/bf16/fp32, fp64 for fp64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014; Vigna's
# reference code): a 64-bit state advanced by the golden gamma, its output the state through this finalizer.
_MASK64 = (1 << 64) - 1
SPLITMIX_GAMMA = 0x9E3779B97F4A7C15
SPLITMIX_MIX = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def seed_from_reservation(philox_seed: int, philox_offset: int) -> int:
    """The contract seed of a reservation in a CUDA generator's Philox stream (``Generator.philox_state``).

    splitmix64's output number ``offset // 4 + 1`` from state ``philox_seed``, shifted to 63 bits: a
    different, well-mixed seed for each reservation of 4 values, and no kernel to draw it. ``philox_seed``
    and ``philox_offset`` are the uint64 values (int64 bits are masked to them).
    """
    z = (philox_seed + ((philox_offset & _MASK64) // 4 + 1) * SPLITMIX_GAMMA) & _MASK64
    z = ((z ^ (z >> 30)) * SPLITMIX_MIX[0]) & _MASK64
    z = ((z ^ (z >> 27)) * SPLITMIX_MIX[1]) & _MASK64
    return (z ^ (z >> 31)) >> 1
