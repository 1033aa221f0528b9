"""The reference categorical VAE: architecture, loss terms, bounds and sampling."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from gumbel_fused import gumbel_max
from gumbel_fused.vae import CategoricalVAE
from gumbel_fused.vae.model import _sample_one_hot, resolve_gumbel_softmax


def tiny_vae(**kwargs) -> CategoricalVAE:
    torch.manual_seed(0)
    return CategoricalVAE(n_latents=2, n_categories=3, hidden=(16,), x_dim=12, **kwargs).double()


def binary_batch(n: int, x_dim: int = 12) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, x_dim), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(1))


def test_default_architecture_is_the_articles():
    model = CategoricalVAE()
    assert [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)] == [512, 256, 200]
    assert [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)] == [256, 512, 784]
    # No activation after the last encoder layer: the logits may be negative.
    assert isinstance(model.encoder[-1], torch.nn.Linear)
    x = torch.rand(5, 784).round()
    assert model.encode(x).shape == (5, 20, 10)
    assert model.encode(x).min() < 0


def test_kl_is_analytic_and_zero_for_the_uniform_posterior():
    model = tiny_vae()
    logits = torch.randn(4, 2, 3, dtype=torch.float64)
    q = torch.distributions.Categorical(logits=logits)
    prior = torch.distributions.Categorical(logits=torch.zeros(3, dtype=torch.float64))
    expected = torch.distributions.kl_divergence(q, prior).sum(-1)
    torch.testing.assert_close(model.kl_to_prior(logits), expected)
    assert model.kl_to_prior(torch.zeros(4, 2, 3, dtype=torch.float64)).abs().max() < 1e-12


@pytest.mark.parametrize("impl", ["fused", "eager"])
def test_loss_parts_and_gradients(impl):
    model = tiny_vae(gumbel_softmax=resolve_gumbel_softmax(impl))
    x = binary_batch(6)
    parts = model(x, tau=0.7)
    assert all(p.shape == (6,) for p in parts)
    torch.testing.assert_close(parts.elbo, parts.log_likelihood - parts.kl)
    assert (parts.log_likelihood <= 0).all() and (parts.kl >= 0).all()
    model.loss(x, tau=0.7, hard=True).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_sampler_is_injectable_and_gets_a_python_float_tau():
    calls = []

    def recording(logits, tau, hard):
        calls.append((type(tau), tau, hard))
        return F.gumbel_softmax(logits, tau, hard)

    tiny_vae(gumbel_softmax=recording).loss(binary_batch(3), tau=0.6, hard=True)
    assert calls == [(float, 0.6, True)]
    with pytest.raises(ValueError, match="unknown"):
        resolve_gumbel_softmax("numba")


def test_exact_samples_draw_the_categorical_with_the_librarys_gumbel_max():
    """Frequencies of 40,000 one-hot draws per row match softmax(logits) within 5 standard errors."""
    logits = torch.tensor([[0.0, 1.0, -2.0, 0.5], [3.0, -torch.inf, 0.0, 0.0]], dtype=torch.float64)
    samples = _sample_one_hot(logits.expand(40_000, 2, 4), torch.Generator().manual_seed(0))
    draws = gumbel_max(logits.expand(40_000, 2, 4), generator=torch.Generator().manual_seed(0))
    assert samples.dtype == torch.float64 and torch.equal(samples, F.one_hot(draws, 4).double())
    freq = samples.mean(0)
    probs = torch.softmax(logits, dim=-1)
    assert ((freq - probs).abs() <= 5 * (probs * (1 - probs) / 40_000).sqrt()).all(), (freq, probs)
    assert freq[1, 1] == 0  # a -inf logit is never drawn


def exact_log_marginal(model: CategoricalVAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x) by enumerating all K ** N latent configurations of a tiny model."""
    n, k = model.n_latents, model.n_categories
    configs = torch.tensor(list(itertools.product(range(k), repeat=n)))
    z = F.one_hot(configs, k).double()
    x_logits = model.decode(z)  # (K**N, x_dim)
    log_lik = -F.binary_cross_entropy_with_logits(
        x_logits.unsqueeze(1).expand(-1, len(x), -1), x.expand(len(configs), -1, -1), reduction="none"
    ).sum(-1)
    return torch.logsumexp(log_lik - n * math.log(k), dim=0)


def test_importance_weighted_estimate_brackets_and_converges():
    model = tiny_vae()
    x = binary_batch(8)
    with torch.no_grad():
        exact = exact_log_marginal(model, x)
    generator = torch.Generator().manual_seed(0)
    elbo = torch.stack([model.elbo_discrete(x, generator).elbo for _ in range(2000)]).mean(0)
    iw = torch.stack([model.log_marginal_iw(x, 1000, generator) for _ in range(5)]).mean(0)
    assert (elbo <= exact + 0.05).all()  # the ELBO is a lower bound (up to Monte Carlo error)
    assert (iw <= exact + 0.01).all()
    torch.testing.assert_close(iw, exact, atol=0.02, rtol=0)  # k = 1000 over 9 configurations: tight
    assert (iw >= elbo - 0.05).all()


def test_reconstruct_and_sample_are_probabilities():
    model = tiny_vae()
    x = binary_batch(4)
    recon = model.reconstruct(x)
    assert recon.shape == (4, 12) and (recon >= 0).all() and (recon <= 1).all()
    torch.testing.assert_close(recon, model.reconstruct(x))  # decodes the mode: deterministic
    samples = model.sample(5, torch.Generator().manual_seed(0))
    assert samples.shape == (5, 12) and (samples >= 0).all() and (samples <= 1).all()
    torch.testing.assert_close(samples, model.sample(5, torch.Generator().manual_seed(0)))
