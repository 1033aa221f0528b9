"""The samples have the right distribution, on every backend, and match F.gumbel_softmax's.

Fixed seeds make these deterministic; thresholds are p > 1e-4 (DESIGN.md section 5).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from .helpers import BACKENDS, run_fwd

N_SAMPLES = 20_000
LOGITS = torch.tensor([1.5, 0.2, -1.0, 0.0, 2.3, -0.7, 0.9])


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_frequencies_follow_softmax(backend):
    # Gumbel-max trick: argmax(logits + g) ~ Categorical(softmax(logits)), for any tau.
    x = LOGITS.expand(N_SAMPLES, -1).unsqueeze(-1)
    y = run_fwd(backend, x, seed=31337, tau=0.4, hard=True)
    counts = y.squeeze(-1).sum(0).double()
    expected = torch.softmax(LOGITS.double(), 0) * N_SAMPLES
    assert stats.chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_frequencies_match_torch(backend):
    x = LOGITS.expand(N_SAMPLES, -1)
    torch.manual_seed(0)
    theirs = F.gumbel_softmax(x, tau=0.4, hard=True).sum(0)
    ours = run_fwd(backend, x.unsqueeze(-1), seed=4242, tau=0.4, hard=True).squeeze(-1).sum(0)
    table = torch.stack([theirs, ours]).numpy()
    assert stats.chi2_contingency(table).pvalue > 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tau", [0.3, 1.0, 3.0])
def test_soft_sample_means_match_torch(backend, tau):
    # Compare the mean of each coordinate with F.gumbel_softmax's by a two-sample Welch t-test.
    x = LOGITS.expand(N_SAMPLES, -1)
    torch.manual_seed(1)
    theirs = F.gumbel_softmax(x.double(), tau=tau).numpy()
    ours = run_fwd(backend, x.unsqueeze(-1).double(), seed=77, tau=tau, hard=False).squeeze(-1).numpy()
    pvalues = stats.ttest_ind(theirs, ours, axis=0, equal_var=False).pvalue
    # Seven coordinates tested at once: Bonferroni.
    assert pvalues.min() > 1e-4 / len(LOGITS), pvalues


@pytest.mark.parametrize("backend", BACKENDS)
def test_noise_distribution_through_the_kernels(backend):
    # With zero logits and tau = 1, log(y_i) - log(y_0) = g_i - g_0: a difference
    # of two independent Gumbels is Logistic(0, 1), with mean 0 and variance pi^2 / 3.
    x = torch.zeros(50_000, 2, 1)
    y = run_fwd(backend, x, seed=5, tau=1.0, hard=False).double().squeeze(-1)
    d = (y[:, 1].log() - y[:, 0].log()).numpy()
    assert stats.kstest(d, "logistic").pvalue > 1e-4
