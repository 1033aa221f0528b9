"""The estimators as their authors' eager PyTorch computes them, over the last dimension.

Written in this project's words from the published code, for two uses: the baselines that the benchmarks
time the fused kernels against, and an independent check of the fused formulas (tests/test_estimators.py
feeds these and the kernels the same sample and noise). Each takes the sampled category (and Gumbel-Rao
its exponential noise) as optional arguments; left out, they are drawn with torch's RNG, as the authors'
code draws them. Each returns the one-hot sample carrying the estimator's gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _one_hot(logits: torch.Tensor, sample: torch.Tensor | None) -> torch.Tensor:
    """The one-hot of ``sample`` (indices over the last dim), drawn from softmax(logits) when None."""
    if sample is None:
        probs = logits.detach().softmax(dim=-1)
        sample = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).view(probs.shape[:-1])
    return F.one_hot(sample, logits.shape[-1]).to(logits.dtype)


def replace_gradient(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward, the gradient of ``surrogate`` in the backward."""
    return value + (surrogate - surrogate.detach())


class _ReinMax(torch.autograd.Function):
    """microsoft/ReinMax ``reinmax/reinmax.py`` (``ReinMaxCore``): the one-hot forward, and a backward
    that combines two softmax vector-Jacobian products, at pi = softmax(x) and at (D + softmax(x / tau)) / 2."""

    @staticmethod
    def forward(ctx, logits, tau, one_hot):
        pi = logits.softmax(dim=-1)
        ctx.save_for_backward(one_hot, logits, pi)
        ctx.tau = tau
        return one_hot

    @staticmethod
    def backward(ctx, grad):
        one_hot, logits, pi = ctx.saved_tensors
        midpoint = 0.5 * ((logits / ctx.tau).softmax(dim=-1) + one_hot)
        heun = 2 * grad * midpoint
        heun = heun - midpoint * heun.sum(dim=-1, keepdim=True)
        euler = -0.5 * grad * pi
        euler = euler - pi * euler.sum(dim=-1, keepdim=True)
        total = heun + euler
        return total - total.mean(dim=-1, keepdim=True), None, None


def reinmax_eager(logits: torch.Tensor, tau: float, sample: torch.Tensor | None = None) -> torch.Tensor:
    """ReinMax (Liu et al. 2023): the sample is drawn with ``torch.multinomial``, as the authors do."""
    return _ReinMax.apply(logits, tau, _one_hot(logits, sample))


def gumbel_rao_eager(
    logits: torch.Tensor,
    tau: float,
    rao_samples: int,
    sample: torch.Tensor | None = None,
    exponentials: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gumbel-Rao (Paulus et al. 2021) as nshepperd/gumbel-rao-pytorch and chijames/GST's ``rao_gumbel``
    compute it: ``rao_samples`` conditional Gumbel draws materialized as an (R, ..., K) tensor, the
    surrogate the mean of their softmaxes, the noise held fixed. ``exponentials``: (R, ..., K) Exp(1)."""
    one_hot = _one_hot(logits, sample)
    with torch.no_grad():
        if exponentials is None:
            exponentials = torch.empty((rao_samples, *logits.shape), dtype=logits.dtype).exponential_()
        e_sampled = (exponentials * one_hot).sum(dim=-1, keepdim=True)
        weights = logits.exp()
        partition = weights.sum(dim=-1, keepdim=True)
        # Top-down conditional Gumbels: the winner at log Z - log E_k, the others truncated below it.
        winner = -torch.log(e_sampled) + torch.log(partition)
        others = -torch.log(exponentials / weights + e_sampled / partition)
        noise = one_hot * winner + (1 - one_hot) * others - logits
    surrogate = ((logits + noise) / tau).softmax(dim=-1).mean(dim=0)
    return replace_gradient(one_hot, surrogate)


def gst_eager(logits: torch.Tensor, tau: float, sample: torch.Tensor | None = None, gap: float = 1.0) -> torch.Tensor:
    """Gapped straight-through (Fan et al. 2022) as chijames/GST's ``gst_mover``: the logits moved, with
    the move detached, so that the sampled one is the max and the others lie ``gap`` below it."""
    one_hot = _one_hot(logits, sample)
    detached = logits.detach()
    top = detached.max(dim=-1, keepdim=True).values
    raise_sampled = (top - detached) * one_hot
    lower_others = (detached + (gap - top)).clamp(min=0.0) * (1 - one_hot)
    surrogate = ((logits + raise_sampled - lower_others) / tau).softmax(dim=-1)
    return replace_gradient(one_hot, surrogate)


def plain_st_eager(logits: torch.Tensor, tau: float, sample: torch.Tensor | None = None) -> torch.Tensor:
    """Straight-through through the probabilities, as torch's ``OneHotCategoricalStraightThrough`` (tau = 1)
    and the ReinMax README's straight-through baseline (softmax(x / tau))."""
    return replace_gradient(_one_hot(logits, sample), (logits / tau).softmax(dim=-1))
