"""The reference backend: the RNG contract bit for bit, and the noise it yields."""

from __future__ import annotations

import math

import pytest
import torch

from gumbel_fused.reference import (
    GUMBEL_CAP,
    UNIFORM_SCALE,
    gumbel_from_uniform_ref,
    philox4x32_ref,
    philox_words_ref,
    rng,
    uniform_from_words_ref,
    uniform_ref,
)
from gumbel_fused.reference.rng import seed_from_reservation

from ..helpers import golden_gumbel


def test_philox_matches_random123_known_answer():
    # Random123's kat_vectors: philox4x32_10 with counter 0 and key 0.
    words = philox4x32_ref(0, torch.zeros((), dtype=torch.int64))
    assert [hex(w) for w in words.tolist()] == ["0x6627e8d5", "0xe169c58d", "0xbc57ac4c", "0x9b00dbd8"]


def test_philox_streams_match_random123_known_answers():
    # Random123's kat_vectors for philox4x32_10 with every counter and key word set: counter words 2-3 hold the
    # stream (docs/DESIGN.md section 3), 0 in the golden file, 1 + r for Gumbel-Rao's repeat r.
    cases = [  # (key, counter words 0-1, counter words 2-3, the four words), each as a 64-bit number
        (0x299F31D0A4093822, 0x85A308D3243F6A88, 0x0370734413198A2E, [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
        (2**64 - 1, 2**64 - 1, 2**64 - 1, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ]
    def as_int64(value):
        return value - 2**64 if value >= 2**63 else value

    for key, counter, stream, want in cases:
        words = philox4x32_ref(as_int64(key), torch.tensor(as_int64(counter)), stream)
        assert words.tolist() == want == _philox_with_python_ints(key, counter, stream)


def _philox_with_python_ints(seed: int, counter: int, stream: int = 0) -> list[int]:
    """Philox4x32-10 in exact integer arithmetic, straight from Random123's definition."""
    mask = 0xFFFFFFFF
    key = [seed & mask, (seed >> 32) & mask]
    c = [counter & mask, (counter >> 32) & mask, stream & mask, (stream >> 32) & mask]
    for _ in range(10):
        product_a, product_b = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(product_b >> 32) ^ c[1] ^ key[0], product_b & mask, (product_a >> 32) ^ c[3] ^ key[1], product_a & mask]
        key = [(key[0] + 0x9E3779B9) & mask, (key[1] + 0xBB67AE85) & mask]
    return c


@pytest.mark.parametrize("seed", [0, 1, -1, 2**63 - 1, -(2**63), 0x0123456789ABCDEF, -0x5DEECE66D])
def test_philox_matches_exact_integer_arithmetic(seed):
    # The reference multiplies uint32 words in int64, whose wrap-around must keep all 64 bits of the
    # product: counters whose words are 0, 2**31 or 2**32 - 1 push each product to its extremes.
    edges = [0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, -1, -(2**63)]
    counters = edges + torch.randint(-(2**63), 2**63 - 1, (64,), generator=torch.Generator().manual_seed(seed)).tolist()
    words = philox4x32_ref(seed, torch.tensor(counters, dtype=torch.int64))
    want = [_philox_with_python_ints(seed % 2**64, counter % 2**64) for counter in counters]
    assert words.tolist() == want


def test_streams_are_the_contract_layout_on_other_counter_words():
    # uniform_ref's stream s is philox_words_ref's stream s, element for element; s = 0 is the sample's noise.
    rows = torch.arange(6)
    for stream in (0, 1, 12, 2**40 + 3):
        want = uniform_from_words_ref(philox_words_ref(5, rows, 7, stream)).view(3, 2, 7).transpose(1, 2)
        assert torch.equal(uniform_ref(5, 3, 7, 2, stream=stream), want)
    assert torch.equal(uniform_ref(5, 3, 7, 2, stream=0), uniform_ref(5, 3, 7, 2))
    assert not torch.equal(uniform_ref(5, 3, 7, 2, stream=1), uniform_ref(5, 3, 7, 2))


def test_uniform_ref_is_the_same_in_any_chunking(monkeypatch):
    # Chunks of rows that split neither, some or all of the Philox groups of a row: the same uniforms.
    whole = uniform_ref(31, outer=7, n_cols=13, inner=3)
    for counters_per_chunk in (1, 4, 5, 11):
        monkeypatch.setattr(rng, "_CHUNK_COUNTERS", counters_per_chunk)
        assert torch.equal(uniform_ref(31, outer=7, n_cols=13, inner=3), whole)
    flat = uniform_from_words_ref(philox_words_ref(31, torch.arange(21), 13))
    assert torch.equal(whole.transpose(1, 2).reshape(21, 13), flat)


def test_golden_words_and_uniforms(rng_golden):
    for case in rng_golden["cases"]:
        rows = torch.tensor([r["row"] for r in case["rows"]], dtype=torch.int64)
        words = philox_words_ref(case["seed"], rows, case["K"])
        uniforms = uniform_from_words_ref(words)
        for i, row in enumerate(case["rows"]):
            assert words[i].tolist() == [int(w, 16) for w in row["words"]], (case["seed"], row["row"])
            assert torch.equal(uniforms[i], torch.tensor(row["u"], dtype=torch.float32)), (case["seed"], row["row"])


def test_golden_word_to_uniform(rng_golden):
    table = rng_golden["word_to_uniform"]
    words = torch.tensor([int(w, 16) for w in table], dtype=torch.int64)
    assert uniform_from_words_ref(words).tolist() == list(table.values())


def test_golden_gumbel_values(rng_golden):
    # The golden g (contract v2) were computed in fp64 by Python's math from Triton's uniforms.
    assert rng_golden["contract"] == 2
    u, want = golden_gumbel(rng_golden)
    torch.testing.assert_close(gumbel_from_uniform_ref(u, torch.float64), want, rtol=0, atol=1e-13)
    # fp32 math: a few ulp of |g| <= 21.5.
    torch.testing.assert_close(gumbel_from_uniform_ref(u, torch.float32).double(), want, rtol=0, atol=8e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_is_finite_for_edge_words(dtype):
    # 0 and 0xffffffff map to u = 0; 0x7fffffff and 0x80000000 to the largest u, 1 - 2**-24.
    words = torch.tensor([0x0, 0x1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF], dtype=torch.int64)
    u = uniform_from_words_ref(words)
    assert u.min().item() == 0.0 and u.max().item() == 1 - 2**-24
    g = gumbel_from_uniform_ref(u, dtype)
    assert torch.isfinite(g).all(), g
    # u = 0 is treated as the smallest positive uniform, so the two smallest words agree, at the cap.
    assert g[0] == g[1] == gumbel_from_uniform_ref(torch.tensor([UNIFORM_SCALE]), dtype)[0]
    assert g[0].item() == pytest.approx(GUMBEL_CAP, abs=1e-5)
    assert g[2].item() == pytest.approx(-math.log(24 * math.log(2)), abs=1e-6)  # the largest u: g = -2.81


def test_upper_tail_follows_the_uniform_lattice():
    """The tail the contract promises: over the 2**16 smallest uniforms (every word with g > 10.39), g matches
    -log(-log1p(-u)) in fp64 to fp32 accuracy, so P(g > t) = P(u < exp(-exp(-t))) holds up to the cap; v1's
    -log(-log u) put all of them below 16.64."""
    x = torch.arange(2**16, dtype=torch.int64)  # the folded int32 values of the words (word = x)
    u = uniform_from_words_ref(x)
    truth = -torch.log(-torch.log1p(-u.double().clamp_min(UNIFORM_SCALE)))
    g = gumbel_from_uniform_ref(u, torch.float32)
    assert (g.double() - truth).abs().max().item() < 4e-6
    assert g.max().item() == pytest.approx(GUMBEL_CAP, abs=4e-6) and truth.min().item() > 10.39
    # The Gumbel survival function at t is 1 - exp(-exp(-t)); the words with g > t number 2 * #{x: g(x) > t}.
    for t in (12.0, 16.0, 17.0, 20.0):
        fraction = 2 * (g > t).sum().item() / 2**32
        exact = -math.expm1(-math.exp(-t))
        assert abs(fraction - exact) <= 2 * 2**-31 + 1e-3 * exact, (t, fraction, exact)


def test_uniform_layout_follows_logical_rows():
    # The (outer, K, inner) layout and a flat (rows, K) layout give each logical row the same noise.
    u3d = uniform_ref(7, outer=3, n_cols=6, inner=5)
    flat = uniform_from_words_ref(philox_words_ref(7, torch.arange(15), 6))
    assert torch.equal(u3d.transpose(1, 2).reshape(15, 6), flat)


def test_uniform_depends_on_seed_high_bits():
    a = uniform_ref(1, 1, 8, 1)
    b = uniform_ref(1 + 2**40, 1, 8, 1)
    assert not torch.equal(a, b)


def test_gumbel_moments():
    # Gumbel(0, 1): mean = Euler-Mascheroni gamma, variance = pi^2 / 6. With n = 2**20 the standard
    # errors are 1.3e-3 (mean) and 5e-3 (variance): 5 sigma bounds.
    g = gumbel_from_uniform_ref(uniform_ref(2024, 1, 2**20, 1), torch.float64)
    assert abs(g.mean().item() - 0.5772156649) < 5 * 1.3e-3
    assert abs(g.var().item() - math.pi**2 / 6) < 5 * 5e-3


def test_uniforms_are_uniform():
    from scipy import stats

    u = uniform_ref(99, 1, 100_000, 1).flatten().numpy()
    assert stats.kstest(u, "uniform").pvalue > 1e-4


def test_seed_from_reservation_is_splitmix64():
    # Vigna's splitmix64 from state 0 gives 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, ...: reservations at
    # offsets 0, 4, ... of a generator seeded 0 take those outputs, shifted to 63 bits.
    assert seed_from_reservation(0, 0) == 0xE220A8397B1DCDAF >> 1
    assert seed_from_reservation(0, 4) == 0x6E789E6AA1B965F4 >> 1
    # The seed and the offset are uint64 bits in int64 tensors: negative values are their uint64 values.
    assert seed_from_reservation(-1, 8) == seed_from_reservation(2**64 - 1, 8)
    seeds = {seed_from_reservation(12345, 4 * n) for n in range(10000)}
    assert len(seeds) == 10000 and max(seeds) < 2**63
