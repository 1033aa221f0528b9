"""The reference categorical VAE (Jang et al. 2017, arXiv:1611.01144), trained with Gumbel-softmax.

``n_latents`` categorical variables with ``n_categories`` classes each, a uniform categorical prior
and a Bernoulli likelihood over binary pixels. Training uses the relaxed (Concrete) sample from the
injectable Gumbel-softmax; evaluation uses exact discrete samples, so the reported ELBO and
importance-weighted -log p(x) are bounds for the discrete model.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from gumbel_fused import gumbel_max, gumbel_softmax

GumbelSoftmaxFn = Callable[..., torch.Tensor]
IMPLEMENTATIONS = ("fused", "eager", "compiled")


def resolve_gumbel_softmax(impl: str, estimator: str = "st", rao_samples: int = 10) -> GumbelSoftmaxFn:
    """The Gumbel-softmax to train with: ``fused`` (this library, with the hard sample's gradient
    ``estimator``), ``eager`` (torch) or ``compiled`` (``torch.compile`` of torch's eager function)."""
    if estimator != "st" and impl != "fused":
        raise ValueError(f"estimator {estimator!r} needs the fused implementation, not {impl!r}")
    if impl == "fused":
        if estimator == "st":
            return gumbel_softmax
        return functools.partial(gumbel_softmax, estimator=estimator, rao_samples=rao_samples)
    if impl == "eager":
        return F.gumbel_softmax
    if impl == "compiled":
        return torch.compile(F.gumbel_softmax)
    raise ValueError(f"unknown Gumbel-softmax implementation {impl!r}; expected one of {', '.join(IMPLEMENTATIONS)}")


class LossParts(NamedTuple):
    """Per-example terms, each of shape ``(B,)``: ``elbo = log_likelihood - kl``."""

    log_likelihood: torch.Tensor  # log p(x | z) for the sampled z
    kl: torch.Tensor  # KL(q(z | x) || uniform prior), analytic
    elbo: torch.Tensor


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them and none after the last: its outputs are logits."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _sample_one_hot(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Exact one-hot samples from ``Categorical(logits)`` over the last dim, in the logits' dtype: the library's
    fused Gumbel-max draw (one pass over the logits, no noise tensor), one-hot encoded."""
    return F.one_hot(gumbel_max(logits, generator=generator), logits.shape[-1]).to(logits.dtype)


class CategoricalVAE(nn.Module):
    """A VAE with ``n_latents`` categorical latents of ``n_categories`` classes each.

    Encoder ``x_dim -> hidden... -> n_latents * n_categories`` logits (no activation on the logits:
    a ReLU there would forbid negative log-odds), decoder ``n_latents * n_categories -> reversed
    hidden... -> x_dim`` Bernoulli logits. The defaults are the article's 20x10 model on MNIST.

    Args:
        n_latents: number of categorical latent variables.
        n_categories: classes per latent.
        hidden: hidden layer sizes of the encoder (the decoder mirrors them).
        x_dim: number of binary pixels.
        gumbel_softmax: the relaxed sampler, called as ``fn(logits, tau, hard)`` with ``tau`` a
            Python float; defaults to this library's fused op.
    """

    def __init__(
        self,
        n_latents: int = 20,
        n_categories: int = 10,
        hidden: Sequence[int] = (512, 256),
        x_dim: int = 784,
        gumbel_softmax: GumbelSoftmaxFn | None = None,
    ) -> None:
        super().__init__()
        self.n_latents, self.n_categories, self.x_dim = n_latents, n_categories, x_dim
        latent_dim = n_latents * n_categories
        self.encoder = _mlp([x_dim, *hidden, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden), x_dim])
        self.gumbel_softmax = gumbel_softmax if gumbel_softmax is not None else resolve_gumbel_softmax("fused")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(z | x): ``(B, x_dim) -> (B, n_latents, n_categories)``."""
        return self.encoder(x).view(-1, self.n_latents, self.n_categories)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x | z): ``(B, n_latents, n_categories) -> (B, x_dim)``."""
        return self.decoder(z.flatten(1))

    def kl_to_prior(self, logits: torch.Tensor) -> torch.Tensor:
        """KL(q || uniform) summed over latents: ``sum q log q + n_latents log K``, shape ``(B,)``."""
        log_q = F.log_softmax(logits, dim=-1)
        return (log_q.exp() * log_q).sum(dim=(-2, -1)) + self.n_latents * math.log(self.n_categories)

    def log_likelihood(self, x_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Bernoulli log p(x | z) summed over pixels, shape ``(B,)``."""
        return -F.binary_cross_entropy_with_logits(x_logits, x, reduction="none").sum(dim=-1)

    def forward(self, x: torch.Tensor, tau: float = 1.0, hard: bool = False) -> LossParts:
        """ELBO terms with a relaxed sample ``z = gumbel_softmax(logits, tau, hard)`` (training).

        The KL is the analytic discrete KL to the uniform prior, as in Jang et al. (2017), rather
        than a relaxed-density KL.
        """
        logits = self.encode(x)
        z = self.gumbel_softmax(logits, tau, hard)
        log_likelihood = self.log_likelihood(self.decode(z), x)
        kl = self.kl_to_prior(logits)
        return LossParts(log_likelihood, kl, log_likelihood - kl)

    def loss(self, x: torch.Tensor, tau: float = 1.0, hard: bool = False) -> torch.Tensor:
        """The training loss: the negative relaxed ELBO averaged over the batch (nats per image)."""
        return -self(x, tau, hard).elbo.mean()

    @torch.no_grad()
    def elbo_discrete(self, x: torch.Tensor, generator: torch.Generator | None = None) -> LossParts:
        """ELBO terms with one exact categorical sample z ~ q(z | x): an unbiased estimate of the
        discrete model's ELBO, a lower bound on log p(x) (evaluation)."""
        logits = self.encode(x)
        z = _sample_one_hot(logits, generator)
        log_likelihood = self.log_likelihood(self.decode(z), x)
        kl = self.kl_to_prior(logits)
        return LossParts(log_likelihood, kl, log_likelihood - kl)

    @torch.no_grad()
    def log_marginal_iw(self, x: torch.Tensor, k: int = 100, generator: torch.Generator | None = None) -> torch.Tensor:
        """Importance-weighted estimate of log p(x) with ``k`` samples (Burda et al. 2016), ``(B,)``.

        The relaxation is only a training device: the model being evaluated is the discrete one, so
        the proposal is the encoder's categorical q(z | x) itself and z_k are exact one-hot draws:

            log p(x) >= E[ logsumexp_k (log p(x | z_k) + log p(z_k) - log q(z_k | x)) - log k ]

        with log p(z) = -n_latents log K (uniform prior) and log q(z | x) the sum of the chosen
        categories' log-probabilities. The bound tightens as k grows; its negation is reported as -log p(x).
        """
        logits = self.encode(x)  # (B, N, K)
        log_q_all = F.log_softmax(logits, dim=-1)
        # k draws per image, laid out (k, B, N, K) so that the decoder runs as one batch of k * B.
        z = _sample_one_hot(logits.expand(k, *logits.shape), generator)
        log_q = (z * log_q_all).sum(dim=(-2, -1))  # (k, B)
        log_prior = -self.n_latents * math.log(self.n_categories)
        x_logits = self.decode(z.flatten(0, 1)).view(k, x.shape[0], self.x_dim)
        log_likelihood = self.log_likelihood(x_logits, x.expand(k, *x.shape))  # (k, B)
        return torch.logsumexp(log_likelihood + log_prior - log_q, dim=0) - math.log(k)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities decoded from the mode of q(z | x) (a one-hot per latent), ``(B, x_dim)``.

        The decoder outputs logits: they go through a sigmoid here, never shown raw.
        """
        logits = self.encode(x)
        z = F.one_hot(logits.argmax(dim=-1), self.n_categories).to(logits.dtype)
        return torch.sigmoid(self.decode(z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixel probabilities of ``n`` images decoded from one-hot draws of the uniform prior,
        ``(n, x_dim)``."""
        device = next(self.parameters()).device
        index = torch.randint(self.n_categories, (n, self.n_latents), generator=generator, device=device)
        z = F.one_hot(index, self.n_categories).to(next(self.parameters()).dtype)
        return torch.sigmoid(self.decode(z))
