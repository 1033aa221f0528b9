"""The laws of ``gumbel_max`` and ``gumbel_topk`` on every backend, against exact probabilities.

* gumbel_max: category frequencies vs softmax(logits / T), at several temperatures (chi-square).
* gumbel_topk: ordered pairs (first, second draw) vs the Plackett-Luce probability p_i p_j / (1 - p_i) of each
  of the K (K - 1) pairs, with p = softmax(logits / T) (chi-square over all pairs).
* both: two tied logits of huge magnitude are drawn first with probability 1/2 each (binomial), which needs the
  logits shifted by their row max before g is added.

Fixed seeds make these deterministic; thresholds are p > 1e-4 (DESIGN.md section 5).
"""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from .helpers import BACKENDS, run_gumbel_max, run_gumbel_topk

N_SAMPLES = 20_000
LOGITS = torch.tensor([1.5, 0.2, -1.0, 0.0, 2.3, -0.7, 0.9])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_draw_frequencies_follow_softmax(backend, temperature):
    x = LOGITS.expand(N_SAMPLES, -1).unsqueeze(-1)
    draws = run_gumbel_max(backend, x, seed=31337, temperature=temperature).flatten()
    counts = torch.bincount(draws, minlength=len(LOGITS)).double()
    expected = torch.softmax(LOGITS.double() / temperature, 0) * N_SAMPLES
    assert stats.chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_ordered_pairs_follow_plackett_luce(backend, temperature):
    logits = torch.tensor([1.0, 0.5, 0.0, -0.5, -1.0, 0.3])
    n_cats = len(logits)
    top = run_gumbel_topk(backend, logits.expand(30_000, -1).unsqueeze(-1), 4242, temperature, k=2).squeeze(-1)
    assert (top[:, 0] != top[:, 1]).all()
    counts = torch.bincount(top[:, 0] * n_cats + top[:, 1], minlength=n_cats * n_cats).double().view(n_cats, n_cats)
    p = torch.softmax(logits.double() / temperature, 0)
    exact = p[:, None] * p[None, :] / (1 - p[:, None])  # P(first = i, second = j), i != j
    off_diagonal = ~torch.eye(n_cats, dtype=torch.bool)
    assert exact[off_diagonal].sum().item() == pytest.approx(1.0)
    observed, expected = counts[off_diagonal].numpy(), (exact[off_diagonal] * len(top)).numpy()
    assert stats.chisquare(observed, expected).pvalue > 1e-4


# Two tied leaders at magnitudes where fp32's spacing swallows g unless the row is shifted by its max m: 8 at 1e8,
# 7.6e22 at 1e30, 2e31 at -3e38 (there the only finite logits: the others are -inf). Unshifted, x + g == x and the
# tie always went to index 0; shifted, both keys are 0 / T + g.
HUGE_TIES = {
    "1e8": [1e8, 1e8, 0.0, 1e8 - 64],
    "1e30": [1e30, 1e30, -1e30, 0.0],
    "-3e38": [-3e38, -3e38, float("-inf"), float("-inf")],
}
N_TIED = 4_000


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("row", HUGE_TIES.values(), ids=HUGE_TIES.keys())
def test_tied_huge_logits_are_drawn_evenly(backend, temperature, row):
    x = torch.tensor(row, dtype=torch.float32).expand(N_TIED, -1).unsqueeze(-1)
    draws = run_gumbel_max(backend, x, seed=2718, temperature=temperature).flatten()
    top = run_gumbel_topk(backend, x, 2718, temperature, k=2).squeeze(-1)
    # The other categories are at least 64 / T below: exp(-64) per draw, none in N_TIED.
    assert set(draws.tolist()) <= {0, 1}
    assert torch.equal(top[:, 0], draws)  # the same keys: the first slot is gumbel_max's draw
    assert ((top[:, 0] + top[:, 1]) == 1).all()  # the pair is (0, 1) or (1, 0)
    assert stats.binomtest(int((draws == 0).sum()), N_TIED, 0.5).pvalue > 1e-4
