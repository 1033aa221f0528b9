"""The C++ sampling kernels (csrc/gumbel_max.cpp, gumbel_topk.cpp, sampling.h): their two layouts and their split
of the work give the same draws. Agreement with the reference and the laws: test_sampling*.py."""

from __future__ import annotations

import pytest
import torch

from gumbel_fused import _cpu

from .helpers import run_gumbel_max, run_gumbel_topk


@pytest.fixture(scope="module", autouse=True)
def kernels():
    if _cpu.load_cpu_kernels() is None:
        pytest.skip("no C++ kernels")


# (outer, K, inner): row tiles (short rows), column tiles (one segment a row), column tiles cut into segments.
SHAPES = [(37, 10, 1), (40, 1500, 1), (3, 70000, 1), (1, 128256, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_draws_do_not_depend_on_the_thread_count(shape):
    x = torch.randn(shape)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, max(2, threads)):
            torch.set_num_threads(n)
            k = 50 if shape[1] > 50 else 4
            results.append((run_gumbel_max("cpu", x, 3, 0.9), run_gumbel_topk("cpu", x, 3, 0.9, k)))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("offset", [0.0, 1e8], ids=["offset0", "offset1e8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_column_tiles_and_row_tiles_draw_the_same(dtype, offset):
    # Contiguous rows of 5000 take the column tiles; the same values stored column-major take the row tiles
    # (K is strided): the scores are the same bits, so the draws are equal, not just close. At 1e8 each path
    # finds the row max m its own way (a pass over the row, or over the tile's lanes) to shift by.
    x = (torch.randn(20, 5000, 1) * 8 + offset).to(dtype)
    strided = x.squeeze(-1).t().contiguous().t().unsqueeze(-1)
    assert strided.stride(1) != 1
    assert torch.equal(run_gumbel_max("cpu", x, 8, 1.3), run_gumbel_max("cpu", strided, 8, 1.3))
    assert torch.equal(run_gumbel_topk("cpu", x, 8, 1.3, 30), run_gumbel_topk("cpu", strided, 8, 1.3, 30))


@pytest.mark.parametrize("leaders", [(1e8, 1e8), (1e8 - 8, 1e8)], ids=["tied", "first-8-below"])
def test_segments_shift_by_the_whole_row_max(leaders):
    # 16 rows of 70000 are each cut into 4 segments (sampling.h row_segments); a row's two leaders sit in its first
    # and its last. Every segment's keys must use the whole row's max m, found before any of them: a segment
    # shifted by its own max would give its leader 1e8 - 8 the key 0 + g instead of -8 + g, and draw it half the
    # time.
    x = torch.full((16, 70_000, 1), 1e8 - 64)
    x[:, 5], x[:, 69_990] = leaders
    seeds = range(13)
    draws = torch.cat([run_gumbel_max("cpu", x, seed, 1.0) for seed in seeds]).flatten()
    pairs = torch.cat([run_gumbel_topk("cpu", x, seed, 1.0, 2) for seed in seeds])
    for seed in seeds[:2]:  # the reference costs ~1 s a call here
        assert torch.equal(draws[16 * seed : 16 * (seed + 1)], run_gumbel_max("reference", x, seed, 1.0).flatten())
        assert torch.equal(pairs[16 * seed : 16 * (seed + 1)], run_gumbel_topk("reference", x, seed, 1.0, 2))
    assert torch.equal(pairs[:, 0].flatten(), draws) and ((pairs[:, 0] + pairs[:, 1]).flatten() == 5 + 69_990).all()
    # P(first = 5) is 1/2 tied (78 to 130 of 208: p < 1e-4 outside), and 1 / (1 + e^8) = 3.4e-4 below (mean 0.07).
    first_drawn = int((draws == 5).sum())
    assert 78 <= first_drawn <= 130 if leaders[0] == leaders[1] else first_drawn <= 2
