"""Regenerate ``rng_golden.json``: Philox words and uniforms produced by Triton itself, and Gumbel values.

The words come from Triton's own ``tl.randint4x(seed, n)`` and the uniforms from its
``uint_to_uniform_float``, not from this project's helpers, so the file is an independent check of every
backend's RNG contract (docs/DESIGN.md section 3). The Gumbel values of contract v2,
g = -log(-log1p(-max(u, smallest uniform))), are computed here in fp64 with Python's ``math`` from those
uniforms, again without the project's code. Needs only Triton's interpreter, no GPU:

    TRITON_INTERPRET=1 python tests/data/make_rng_golden.py > tests/data/rng_golden.json
"""

from __future__ import annotations

import json
import math
import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton decorates the kernel

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.language.random import randint4x, uint_to_uniform_float  # noqa: E402

# (seed, K, logical rows): small and ragged K, 32- and 64-bit seeds, the largest seed, a 64-bit row index.
CASES = [
    (42, 10, [0, 1, 2]),
    (0, 4, [0, 1]),
    (123456789, 7, [0, 1]),
    (67830198458, 9, [0]),
    (2**63 - 1, 5, [0]),
    (7, 3, [2**33 - 1]),
]
CONTRACT_VERSION = 2
# The smallest positive uniform, Triton's scale rounded to fp32 (2**-31 * (1 - 2**-24)): u = 0 is replaced by it.
SMALLEST_UNIFORM = float(torch.tensor(4.6566127342e-10, dtype=torch.float32))
# Words at the ends of the int32 range, where the uniform's sign fold and its 0 and 1 - 2**-24 ends live; the
# smallest uniforms (g's upper tail), the last and first word whose int-to-float conversion is exact or
# rounds, and the two sides of u = 1/2 (where 1 - u stops being exact in fp32).
EDGE_WORDS = [
    0x00000000, 0x00000001, 0x00000002, 0x00000003, 0x00FFFFFF, 0x01000001, 0x3FFFFF80, 0x40000100,
    0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF,
]  # fmt: skip


@triton.jit
def _words_kernel(seed_ptr, counter_ptr, words_ptr, u_ptr, N_GROUPS: tl.constexpr):
    groups = tl.arange(0, N_GROUPS)
    w0, w1, w2, w3 = randint4x(tl.load(seed_ptr), tl.load(counter_ptr + groups))
    for lane, word in enumerate((w0, w1, w2, w3)):
        tl.store(words_ptr + groups * 4 + lane, word.to(tl.int64, bitcast=False) & 0xFFFFFFFF)
        tl.store(u_ptr + groups * 4 + lane, uint_to_uniform_float(word))


@triton.jit
def _uniform_kernel(words_ptr, u_ptr, N: tl.constexpr):
    offsets = tl.arange(0, N)
    tl.store(u_ptr + offsets, uint_to_uniform_float(tl.load(words_ptr + offsets)))


def contract_row(seed: int, n_cols: int, row: int) -> tuple[list[int], list[float]]:
    """Words and uniforms of logical ``row``: element c takes word c % 4 of counter row * ceil(K/4) + c // 4."""
    n_groups = (n_cols + 3) // 4
    padded = triton.next_power_of_2(n_groups)
    counters = torch.arange(padded, dtype=torch.int64) + row * n_groups
    words = torch.empty(padded * 4, dtype=torch.int64)
    uniforms = torch.empty(padded * 4, dtype=torch.float32)
    _words_kernel[(1,)](torch.tensor(seed, dtype=torch.int64), counters, words, uniforms, N_GROUPS=padded)
    return words[:n_cols].tolist(), uniforms[:n_cols].tolist()


def word_to_uniform(words: list[int]) -> list[float]:
    as_uint32 = torch.tensor(words, dtype=torch.int64).to(torch.uint32)
    padded = triton.next_power_of_2(len(words))
    buffer = torch.zeros(padded, dtype=torch.uint32)
    buffer[: len(words)] = as_uint32
    uniforms = torch.empty(padded, dtype=torch.float32)
    _uniform_kernel[(1,)](buffer, uniforms, N=padded)
    return uniforms[: len(words)].tolist()


def gumbel(u: float) -> float:
    """Contract v2's Gumbel value of a uniform, in fp64."""
    return -math.log(-math.log1p(-max(u, SMALLEST_UNIFORM)))


def main() -> None:
    cases = []
    for seed, n_cols, rows in CASES:
        entries = []
        for row in rows:
            words, uniforms = contract_row(seed, n_cols, row)
            entries.append(
                {"row": row, "words": [f"0x{w:08x}" for w in words], "u": uniforms, "g": [gumbel(u) for u in uniforms]}
            )
        cases.append({"seed": seed, "K": n_cols, "rows": entries})
    edge_uniforms = word_to_uniform(EDGE_WORDS)
    table = dict(zip((f"0x{w:08x}" for w in EDGE_WORDS), edge_uniforms, strict=True))
    gumbels = dict(zip((f"0x{w:08x}" for w in EDGE_WORDS), map(gumbel, edge_uniforms), strict=True))
    golden = {
        "contract": CONTRACT_VERSION,
        "triton": triton.__version__,
        "cases": cases,
        "word_to_uniform": table,
        "word_to_gumbel": gumbels,
    }
    json.dump(golden, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
