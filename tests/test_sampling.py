"""``gumbel_max`` and ``gumbel_topk``: every backend against the reference, the same-seed identities, masks and
undefined rows, and the public functions' shapes, dims and bad input. Distributions: test_sampling_statistics.py.
"""

from __future__ import annotations

import pytest
import torch

from gumbel_fused import gumbel_max, gumbel_softmax, gumbel_topk
from gumbel_fused.reference import sampling_scores_ref

from .conftest import DTYPES
from .helpers import BACKENDS, run_fwd, run_gumbel_max, run_gumbel_topk

SEED = 20240611
TEMPERATURE = 0.7

# (outer, K, inner), each hitting a kernel branch.
SHAPES = [
    pytest.param((3, 1, 1), id="K1"),
    pytest.param((37, 10, 1), id="K10-row-tiles-masked-tile"),  # C++ row tiles, partial; Triton many rows a tile
    pytest.param((5, 300, 4), id="inner4"),  # C++ row tiles over strided rows; Triton tall tiles
    pytest.param((6, 1500, 1), id="K1500-column-tiles"),  # C++ column tiles with a padded block; Triton 2 top-k chunks
    pytest.param((1, 40000, 1), id="K40000-segments"),  # C++: one row cut into segments; Triton: chunked row
]


def _logits(shape, dtype, gen_seed: int = 0) -> torch.Tensor:
    return (torch.randn(shape, generator=torch.Generator().manual_seed(gen_seed)) * 2).to(dtype)


def _closest_gap(x: torch.Tensor, ranks: int) -> torch.Tensor:
    """Per row of ``(outer, K, inner)`` logits: the smallest gap between consecutive scores of the reference among
    its ``ranks`` best (inf for a single one), where last-bit differences in g may swap two draws."""
    ranked = sampling_scores_ref(x, torch.tensor(SEED), TEMPERATURE).double().sort(dim=1, descending=True).values
    ranked = ranked[:, : min(ranks, x.shape[1])]
    if ranked.shape[1] < 2:
        return torch.full((x.shape[0], x.shape[2]), float("inf"), dtype=torch.float64)
    return (ranked[:, :-1] - ranked[:, 1:]).amin(dim=1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES)
def test_gumbel_max_matches_reference(backend, dtype, shape):
    if backend == "triton" and shape[1] > 2000 and dtype != torch.float32:
        pytest.skip("the interpreter is slow: long rows in fp32 only")
    x = _logits(shape, dtype, gen_seed=shape[1])
    want = run_gumbel_max("reference", x, SEED, TEMPERATURE)
    got = run_gumbel_max(backend, x, SEED, TEMPERATURE)
    assert got.dtype == torch.int64 and got.shape == (shape[0], shape[2])
    # The backends' logs differ in the last bits of g: only a near-tie of the reference's scores may flip.
    differs = got != want
    assert (_closest_gap(x, 2)[differs] < 1e-5).all(), f"{backend}: {int(differs.sum())} draws differ away from a tie"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", SHAPES)
def test_gumbel_topk_matches_reference(backend, dtype, shape):
    if backend == "triton" and shape[1] > 2000 and dtype != torch.float32:
        pytest.skip("the interpreter is slow: long rows in fp32 only")
    x = _logits(shape, dtype, gen_seed=shape[1] + 1)
    for k in sorted({1, min(3, shape[1]), min(shape[1], 70)}):
        want = run_gumbel_topk("reference", x, SEED, TEMPERATURE, k)
        got = run_gumbel_topk(backend, x, SEED, TEMPERATURE, k)
        assert got.dtype == torch.int64 and got.shape == (shape[0], k, shape[2])
        rows_differ = (got != want).any(dim=1)
        near_tie = _closest_gap(x, k + 1) < 1e-5
        assert near_tie[rows_differ].all(), f"{backend} k={k}: {int(rows_differ.sum())} rows differ away from a tie"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("top", [1e8, 1e30, -3e38], ids=str)
def test_huge_logits_match_reference(backend, top):
    # fp32 logits 0 to 3 spacings below `top` (8 at 1e8, where exp(-8 / T) still counts; far more at 1e30 and
    # -3e38, where only the leaders' ties count): every backend shifts by the row max as the reference does.
    top = torch.tensor(top).item()  # the fp32 number nearest
    spacing = top - torch.tensor(top).nextafter(torch.tensor(float("-inf"))).item()
    steps = torch.randint(0, 4, (40, 300, 1), generator=torch.Generator().manual_seed(9)).double()
    x = (top - spacing * steps).float()
    assert (x.double() == top - spacing * steps).all()  # exact: the values are fp32 numbers
    draws = run_gumbel_max(backend, x, SEED, TEMPERATURE)
    if abs(top) > 1e9:  # one spacing is over 1e22 / T: only the leaders (0 steps down) can be drawn
        assert (steps.squeeze(-1).gather(1, draws) == 0).all()
    differs = draws != run_gumbel_max("reference", x, SEED, TEMPERATURE)
    assert (_closest_gap(x, 2)[differs] < 1e-5).all(), f"{backend}: {int(differs.sum())} draws differ away from a tie"
    top5 = run_gumbel_topk(backend, x, SEED, TEMPERATURE, 5)
    rows_differ = (top5 != run_gumbel_topk("reference", x, SEED, TEMPERATURE, 5)).any(dim=1)
    assert (_closest_gap(x, 6)[rows_differ] < 1e-5).all(), f"{backend}: {int(rows_differ.sum())} rows differ"


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_identities(backend):
    # The same noise, element for element: gumbel_max = gumbel_softmax(hard).argmax at T = 1, and = top-k's first.
    x = _logits((200, 50, 1), torch.float32)
    draws = run_gumbel_max(backend, x, SEED, 1.0)
    hard = run_fwd(backend, x, SEED, 1.0, hard=True)
    assert torch.equal(draws, hard.argmax(dim=1))
    for temperature in (1.0, 0.5, 3.0):
        first = run_gumbel_topk(backend, x, SEED, temperature, 5)[:, 0]
        assert torch.equal(first, run_gumbel_max(backend, x, SEED, temperature))


def test_public_identities_for_the_same_rng_state():
    x = torch.randn(6, 9, 700)
    for dim in (1, -1):
        torch.manual_seed(3)
        a = gumbel_max(x, dim)
        torch.manual_seed(3)
        b = gumbel_softmax(x, hard=True, dim=dim).argmax(dim)
        torch.manual_seed(3)
        c = gumbel_topk(x, 4, dim).select(dim, 0)
        assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_categories_and_undefined_rows(backend):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(64, 40, 1, generator=gen)
    x[:, 1::2] = float("-inf")  # only even categories are drawable: 20 a row
    x[0] = float("-inf")  # nothing to draw
    x[1, 7] = float("nan")  # undefined, as softmax
    x[2, 4] = float("inf")  # undefined, as softmax
    x[3, :] = float("-inf")
    x[3, :3] = 0.0  # three drawable categories
    draws = run_gumbel_max(backend, x, SEED, TEMPERATURE).squeeze(-1)
    assert draws[:3].tolist() == [-1, -1, -1]
    assert 0 <= draws[3] < 3 and (draws[4:] % 2 == 0).all() and (draws[4:] >= 0).all()
    top = run_gumbel_topk(backend, x, SEED, TEMPERATURE, 25).squeeze(-1)
    assert (top[:3] == -1).all()
    assert sorted(top[3, :3].tolist()) == [0, 1, 2] and (top[3, 3:] == -1).all()
    assert (top[4:, :20] % 2 == 0).all() and (top[4:, :20] >= 0).all() and (top[4:, 20:] == -1).all()
    assert all(len(set(row)) == 20 for row in top[4:, :20].tolist())  # without replacement


@pytest.mark.parametrize("backend", BACKENDS)
def test_topk_of_all_categories_is_a_permutation(backend):
    x = _logits((30, 17, 1), torch.float32)
    top = run_gumbel_topk(backend, x, SEED, 2.0, 17).squeeze(-1)
    assert torch.equal(top.sort(dim=1).values, torch.arange(17).expand(30, 17))


# --- the public functions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_output_shape_dtype_device(dtype):
    x = torch.randn(4, 3, 7).to(dtype)
    assert gumbel_max(x).shape == (4, 3) and gumbel_max(x, 1).shape == (4, 7) and gumbel_max(x).dtype == torch.int64
    assert gumbel_topk(x, 2).shape == (4, 3, 2) and gumbel_topk(x, 3, dim=1).shape == (4, 3, 7)
    assert gumbel_topk(x, 2).dtype == torch.int64 and gumbel_topk(x, 2).device == x.device


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_any_dim_equals_moving_dim_last(dim):
    x = torch.randn(5, 6, 7)
    torch.manual_seed(3)
    a, b = gumbel_max(x, dim), gumbel_topk(x, 3, dim)
    torch.manual_seed(3)
    moved = x.movedim(dim, -1).contiguous()
    assert torch.equal(a, gumbel_max(moved, -1)) and torch.equal(b, gumbel_topk(moved, 3, -1).movedim(-1, dim))


def test_non_contiguous_input_generator_and_temperature():
    x = torch.randn(2000, 40)[::3, 5:].t()  # no dimension contiguous
    draws = gumbel_max(x, 0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(draws, gumbel_max(x.contiguous(), 0, generator=torch.Generator().manual_seed(5)))
    top = gumbel_topk(x, 4, 0, temperature=0.3, generator=torch.Generator().manual_seed(5))
    want = gumbel_topk(x.contiguous(), 4, 0, temperature=0.3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(top, want)
    assert not torch.equal(draws, gumbel_max(x, 0, generator=torch.Generator().manual_seed(6)))


def test_scalar_and_empty_inputs():
    assert gumbel_max(torch.tensor(1.5)).item() == 0 and gumbel_max(torch.tensor(1.5)).shape == ()
    assert gumbel_topk(torch.tensor(1.5), 1).shape == () and gumbel_topk(torch.tensor(1.5), 0).shape == (0,)
    assert gumbel_max(torch.randn(0, 5)).shape == (0,)
    assert gumbel_topk(torch.randn(0, 5), 2).shape == (0, 2) and gumbel_topk(torch.randn(3, 5), 0).shape == (3, 0)
    assert gumbel_topk(torch.randn(3, 0), 0).shape == (3, 0)


def test_bad_input_raises_clear_errors():
    x = torch.randn(3, 5)
    with pytest.raises(TypeError, match="argument 'logits' must be Tensor"):
        gumbel_max([1.0, 2.0])
    with pytest.raises(TypeError, match="floating point"):
        gumbel_topk(torch.ones(3, 5, dtype=torch.int64), 2)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="argument 'temperature' must be a positive finite number"):
            gumbel_max(x, temperature=bad)
    with pytest.raises(TypeError, match="argument 'temperature'"):
        gumbel_topk(x, 2, temperature="hot")
    with pytest.raises(IndexError, match="Dimension out of range"):
        gumbel_max(x, 2)
    with pytest.raises(TypeError, match="argument 'generator' must be torch.Generator"):
        gumbel_topk(x, 2, generator=5)
    for k in (-1, 6):
        message = rf"argument 'k' must be in \[0, 5\] \(the size of dimension 1\), but got {k}"
        with pytest.raises(ValueError, match=message):
            gumbel_topk(x, k)
    with pytest.raises(ValueError, match=r"argument 'k' must be in \[0, 3\] \(the size of dimension 0\)"):
        gumbel_topk(x, 4, dim=0)
    for k in (2.0, True):
        with pytest.raises(TypeError, match="argument 'k' must be int"):
            gumbel_topk(x, k)
    with pytest.raises(IndexError, match="cannot draw from dimension 1 of size 0"):
        gumbel_max(torch.randn(3, 0))


def test_indices_need_no_gradient():
    x = torch.randn(4, 9, requires_grad=True)
    draws, top = gumbel_max(x * 2), gumbel_topk(x * 2, 3)
    assert not draws.requires_grad and not top.requires_grad and draws.grad_fn is None
