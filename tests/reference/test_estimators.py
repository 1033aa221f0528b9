"""The reference estimators (the backward op's reference) against their authors' eager forms, fed the same
sample and noise, and their NaN and -inf conventions."""

from __future__ import annotations

import pytest
import torch

from gumbel_fused.reference import (
    ESTIMATORS,
    estimator_index,
    exponential_from_uniform_ref,
    gumbel_softmax_bwd_ref,
    perturbed_logits_ref,
    published,
    uniform_ref,
)
from gumbel_fused.reference.estimators import RAO_FIRST_STREAM

SEED = 97
RAO_SAMPLES = 4


def _estimator_bwd(dy, logits, seed, tau, estimator, rao_samples):
    """The backward op's reference for the hard sample the forward draws with ``seed``."""
    sample = perturbed_logits_ref(logits, seed, tau).argmax(dim=1, keepdim=True)
    return gumbel_softmax_bwd_ref(dy, logits, torch.tensor(seed), tau, True, estimator, rao_samples, sample)


def _published_grad(estimator: str, logits: torch.Tensor, dy: torch.Tensor, tau: float) -> torch.Tensor:
    """The authors' form's gradient on ``(N, K)`` logits, with the sample and (Gumbel-Rao) the exponential
    noise of the contract, as the fused op draws them."""
    n, n_cols = logits.shape
    sample = perturbed_logits_ref(logits.unsqueeze(-1), SEED, tau).argmax(dim=1).squeeze(-1)
    x = logits.clone().requires_grad_()
    if estimator == "gumbel_rao":
        exponentials = torch.stack([
            exponential_from_uniform_ref(uniform_ref(SEED, n, n_cols, 1, stream=RAO_FIRST_STREAM + r), logits.dtype)
            for r in range(RAO_SAMPLES)
        ]).squeeze(-1)
        y = published.gumbel_rao_eager(x, tau, RAO_SAMPLES, sample, exponentials)
    else:
        y = getattr(published, f"{estimator}_eager")(x, tau, sample)
    assert torch.equal(y.argmax(dim=-1), sample)
    return torch.autograd.grad(y, x, dy)[0]


@pytest.mark.parametrize("tau", [1.0, 0.4, 2.5])
@pytest.mark.parametrize("estimator", ["reinmax", "gumbel_rao", "gst", "plain_st"])
def test_reference_matches_published_form(estimator, tau):
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(64, 9, generator=gen, dtype=torch.float64) * 2
    dy = torch.randn(64, 9, generator=gen, dtype=torch.float64)
    want = _published_grad(estimator, logits, dy, tau)
    got = _estimator_bwd(dy.unsqueeze(-1), logits.unsqueeze(-1), SEED, tau, estimator, RAO_SAMPLES)
    torch.testing.assert_close(got.squeeze(-1), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("estimator", ["reinmax", "gumbel_rao", "gst", "plain_st"])
def test_masked_categories_get_zero_gradient(estimator):
    # -inf logits: probability 0, never drawn. The authors' Gumbel-Rao and GST forms give NaN there
    # (inf * 0 in their noise and their move); the fused estimators give 0 and keep the row finite.
    logits = torch.randn(32, 7, 1, dtype=torch.float64)
    logits[:, 2] = float("-inf")
    dy = torch.randn(32, 7, 1, dtype=torch.float64)
    got = _estimator_bwd(dy, logits, SEED, 0.7, estimator, 3)
    assert torch.equal(got[:, 2], torch.zeros(32, 1, dtype=torch.float64))
    assert got.isfinite().all()


@pytest.mark.parametrize("estimator", ["reinmax", "gumbel_rao", "gst", "plain_st"])
def test_invalid_rows_are_nan_and_leave_the_others_alone(estimator):
    logits = torch.randn(5, 6, 1)
    logits[1, 2] = float("nan")
    logits[2] = float("-inf")
    logits[3, 0] = float("inf")
    dy = torch.randn(5, 6, 1)
    got = _estimator_bwd(dy, logits, SEED, 0.5, estimator, RAO_SAMPLES)
    assert got[1:4].isnan().all()
    assert got[[0, 4]].isfinite().all()
    alone = _estimator_bwd(dy[[0, 4]], logits[[0, 4]], SEED, 0.5, estimator, RAO_SAMPLES)
    # Rows 0 and 4 keep their noise only where their logical row index is unchanged: row 0.
    torch.testing.assert_close(got[0], alone[0])


def test_estimator_index_names_the_argument():
    assert [estimator_index(name, True, 1) for name in ESTIMATORS] == list(range(len(ESTIMATORS)))
    assert estimator_index("st", False, 10) == 0
    with pytest.raises(ValueError, match="argument 'estimator' must be one of 'st', 'reinmax'"):
        estimator_index("rein_max", True, 10)
    with pytest.raises(ValueError, match="argument 'estimator'='gst' requires hard=True"):
        estimator_index("gst", False, 10)
    with pytest.raises(ValueError, match="argument 'rao_samples' must be a positive integer, but got 0"):
        estimator_index("gumbel_rao", True, 0)
