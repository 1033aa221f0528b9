"""Numerical exactness on every backend (issue 12): soft rows that sum to 1 at any K, and logits of any
magnitude, against fp64 and against F.gumbel_softmax measured on the same logits.

Triton runs interpreted on CPU here, where a chunk of a long row costs ~50 ms, so its long-row logic is
tested with shrunken blocks (many chunks of a short row, the count a GPU sees at K = 2**17 .. 2**18) and its
compensated chunk accumulation on its own in tests/_triton/test_gumbel_softmax.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gumbel_fused._triton import tiles
from gumbel_fused.reference import gumbel_from_uniform_ref, uniform_ref

from .helpers import BACKENDS, assert_close_verbose, run_fwd

UNIT_ROUNDOFF = 2.0**-24  # fp32


def row_sum_bound(n_cols: int) -> float:
    """Bound on |sum(y) - 1| of an fp32 soft sample over K = ``n_cols`` categories, on every backend.

    First-order rounding analysis: a row's terms exp(z - max) are summed in serial runs of at most 16
    (C++: a 16-column chunk; Triton and torch.sum: trees) joined by a pairwise tree (C++, torch.sum's
    cascade) or a compensated running sum (Triton's chunks), so the computed sum S is within
    (16 + log2 K) u of the exact sum of the computed terms; y = term / S then rounds each term by u more,
    which adds at most u to the row. The terms' own errors cancel: the same terms are summed and divided.
    (A serial fp32 sum is only bounded by K u, and F's error at K = 2**24 is ~1e-3.)
    """
    return (16 + math.log2(n_cols) + 1) * UNIT_ROUNDOFF


def _row_sum_error(y: torch.Tensor) -> float:
    return (y.double().sum(dim=1) - 1).abs().max().item()


def _eager_row_sum_error(x: torch.Tensor, tau: float) -> float:
    return _row_sum_error(F.gumbel_softmax(x, tau, dim=1))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("tau", [1.0, 0.5], ids=["tau1", "tau0.5"])  # C++ has a tau = 1 path of its own
@pytest.mark.parametrize("log2_k", [17, 20, 22, pytest.param(24, marks=pytest.mark.slow)], ids=lambda k: f"K=2^{k}")
def test_soft_rows_sum_to_one_at_large_k(backend, tau, log2_k):
    rows = 3 if log2_k <= 20 else 1  # several rows share a C++ tile, one lane each
    x = torch.randn(rows, 2**log2_k, 1, generator=torch.Generator().manual_seed(log2_k)) * 2
    error = _row_sum_error(run_fwd(backend, x, 11, tau, hard=False))
    eager = _eager_row_sum_error(x, tau)
    bound = row_sum_bound(x.shape[1])
    assert error <= bound, f"{backend}: |sum - 1| = {error:.3g} > bound {bound:.3g} (F.gumbel_softmax: {eager:.3g})"


def swamping_logits(n_cols: int, tau: float, block: int) -> torch.Tensor:
    """A row that a serially summed softmax gets wrong by ~K / block half-ulps: one category at 0, and the
    others so far below that a block of ``block`` of them adds less than half an ulp of the row's sum.

    The others' terms are exp(-level + (g - g_0) / tau) with |g| < 21.5, so a large tau keeps them within
    a factor 1.3 of exp(-level); level puts a block's sum at 0.7 / 1.3 of half an ulp of 1.
    """
    level = -math.log(0.7 / 1.3 * UNIT_ROUNDOFF / block)
    x = torch.full((1, n_cols, 1), -level * tau)
    x[0, 0, 0] = 0.0
    return x


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_soft_row_of_terms_below_half_an_ulp_sums_to_one(backend):
    tau = 100.0
    x = swamping_logits(2**16, tau, block=16)
    error = _row_sum_error(run_fwd(backend, x, 3, tau, hard=False))
    eager = _eager_row_sum_error(x, tau)
    assert error <= row_sum_bound(x.shape[1]), f"{backend}: |sum - 1| = {error:.3g} (F.gumbel_softmax: {eager:.3g})"


def test_triton_chunked_row_of_terms_below_half_an_ulp_sums_to_one(monkeypatch):
    # 32 chunks of 16: each chunk's sum is below half an ulp of the row's, so a plain running sum of the
    # chunks drops all but the first, 31 * 0.7 / 1.3 * 2**-24 ~ 1e-6 in all; with compensation the error is
    # that of the first chunk's tree (4 roundings) and the division: at most 6 u.
    monkeypatch.setattr(tiles, "MAX_SINGLE_BLOCK", 16)
    monkeypatch.setattr(tiles, "MULTI_BLOCK_K", 16)
    tau = 100.0
    x = swamping_logits(512, tau, block=16)
    assert not tiles.launch_config(1, 512, 1)["SINGLE_PASS"]
    error = _row_sum_error(run_fwd("triton", x, 3, tau, hard=False))
    eager = _eager_row_sum_error(x, tau)
    assert error <= 6 * UNIT_ROUNDOFF, f"|sum - 1| = {error:.3g} (F.gumbel_softmax: {eager:.3g})"


# Rows of logits at magnitudes where fp32's spacing is coarser than the noise (8 at 1e8), mixed with -inf.
INF = float("inf")
HUGE_ROWS = {
    "issue-1e8": [1e8, 1e8, 1e8 - 8],
    "tied-1e8": [1e8] * 6,
    "tied-1e30": [1e30] * 6,
    "tied-minus-1e30": [-1e30] * 6,
    "mixed-1e30": [1e30, -1e30, 0.0, 1e30, -INF, 1e30 - 1e24],
    "1e8-with-minus-inf": [-INF, 1e8, -INF, 1e8 - 3, 1e8 - 1, -INF],
    "fp32-max": [3e38, -3e38, 3e38, 3e38 - 1e32],
    # The max grows chunk after chunk of 4 (Triton's chunked pass re-bases its running shift twice).
    "rising": [-1e30, 0.0, 1.0, -INF, 1e8, 1e8 - 4, -INF, 0.0, 1e30, 1e30, -INF, 1e30 - 1e24],
}


def huge_logits(name: str, repeat: int, channels_first: bool) -> torch.Tensor:
    """``repeat`` copies of a row (each draws its own noise) as fp32 (outer, K, inner): (repeat, K, 1), or
    (1, K, repeat) for channels_first, the dVAE's layout, which the C++ hard forward tiles differently."""
    row = torch.tensor(HUGE_ROWS[name], dtype=torch.float32)
    if channels_first:
        return row.view(1, -1, 1).repeat(1, 1, repeat)
    return row.repeat(repeat, 1).unsqueeze(-1)


def fp64_truth(x: torch.Tensor, seed: int, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(z) and z in fp64 for fp32 logits, with the contract's noise: z = ((x - m) + g) / tau,
    m the row max (exact in fp64 for these rows), which equals softmax((x + g) / tau) in exact arithmetic."""
    outer, n_cols, inner = x.shape
    g = gumbel_from_uniform_ref(uniform_ref(seed, outer, n_cols, inner), torch.float64)
    x64 = x.double()
    z = ((x64 - x64.amax(dim=1, keepdim=True)) + g) / tau
    return torch.softmax(z, dim=1), z


@pytest.mark.parametrize(
    "backend, chunked",
    [*((b, False) for b in BACKENDS), ("triton", True)],
    ids=[*BACKENDS, "triton-chunked"],
)
@pytest.mark.parametrize("tau", [1.0, 0.5], ids=["tau1", "tau0.5"])
@pytest.mark.parametrize("name", HUGE_ROWS)
@pytest.mark.parametrize("channels_first", [False, True], ids=["rows", "channels-first"])
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # NumPy (Triton's interpreter) at 3e38
def test_huge_logits_match_fp64(monkeypatch, backend, chunked, tau, name, channels_first):
    if chunked:  # Triton's online pass (running shift, re-based) over chunks of 4 of rows longer than 4
        monkeypatch.setattr(tiles, "MAX_SINGLE_BLOCK", 4)
        monkeypatch.setattr(tiles, "MULTI_BLOCK_K", 4)
    x = huge_logits(name, repeat=256, channels_first=channels_first)
    seed = 5
    truth, z = fp64_truth(x, seed, tau)
    soft = run_fwd(backend, x, seed, tau, hard=False)
    # fp32 z keeps g to ~2 ulp of |z| <= 25 / tau, so y to ~1e-5 absolute.
    assert_close_verbose(soft, truth, atol=1e-5, msg=f"{backend} {name} soft")

    hard = run_fwd(backend, x, seed, tau, hard=True)
    assert torch.equal(hard.sum(dim=1), torch.ones(x.shape[0], x.shape[2]))
    picked = hard.argmax(dim=1)
    best = z.amax(dim=1)
    gap = best - z.gather(1, picked.unsqueeze(1)).squeeze(1)
    assert gap.max().item() < 1e-5, f"{backend} {name}: a hard sample is not the argmax of z (gap {gap.max():.3g})"
    # The one-hot is at the soft sample's argmax, but where two z are within rounding of each other.
    top2 = z.topk(2, dim=1).values
    clear = top2[:, 0] - top2[:, 1] > 1e-5
    assert torch.equal(picked[clear], soft.argmax(dim=1)[clear]), f"{backend} {name}: hard and soft disagree"
