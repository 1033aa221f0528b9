"""The reference backend: the RNG contract bit for bit, and the noise it yields."""

from __future__ import annotations

import math

import pytest
import torch

from gumbel_fused.reference import (
    UNIFORM_SCALE,
    gumbel_from_uniform_ref,
    philox4x32_ref,
    philox_words_ref,
    uniform_from_words_ref,
    uniform_ref,
)


def test_philox_matches_random123_known_answer():
    # Random123's kat_vectors: philox4x32_10 with counter 0 and key 0.
    words = philox4x32_ref(0, torch.zeros((), dtype=torch.int64))
    assert [hex(w) for w in words.tolist()] == ["0x6627e8d5", "0xe169c58d", "0xbc57ac4c", "0x9b00dbd8"]


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_is_finite_for_edge_words(dtype):
    # 0 and 0xffffffff map to u = 0; 0x7fffffff and 0x80000000 to the largest u, 1 - 2**-24.
    words = torch.tensor([0x0, 0x1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF], dtype=torch.int64)
    u = uniform_from_words_ref(words)
    assert u.min().item() == 0.0 and u.max().item() == 1 - 2**-24
    g = gumbel_from_uniform_ref(u, dtype)
    assert torch.isfinite(g).all(), g
    # u = 0 is treated as the smallest positive uniform, so the two smallest words agree.
    assert g[0] == g[1] == gumbel_from_uniform_ref(torch.tensor([UNIFORM_SCALE]), dtype)[0]
    assert 16.0 < g[2].item() < 17.0  # -log(-log(1 - 2**-24)) = 16.64


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
