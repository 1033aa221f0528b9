"""Reference gradient estimators of the hard sample, on the op layout ``(outer, K, inner)``, softmax over K.

Every estimator shares the forward: the exact one-hot D of the category k = argmax(x + g) drawn with the
contract's noise (stream 0), which is distributed as Categorical(softmax(x)) whatever tau > 0 is, since
argmax((x + g) / tau) = argmax(x + g). ReinMax's and GST's reference code draw k with torch.multinomial from
softmax(x): the same law. They differ only in what they return as dL/dx given dy = dL/dD.
With J(p) dy = p * (dy - <dy, p>), the vector-Jacobian product of a softmax whose output is p:

* ``st``, straight-through Gumbel-softmax (Jang et al. 2017, arXiv:1611.01144), ``F.gumbel_softmax``:
  J(y) dy / tau with y = softmax((x + g) / tau), the soft sample of the same noise.
* ``plain_st``, straight-through (Bengio et al. 2013, arXiv:1308.3432), as torch's
  ``OneHotCategoricalStraightThrough`` (``sample + probs - probs.detach()``): the gradient of the
  probabilities rather than of a noisy sample, J(q) dy / tau with q = softmax(x / tau). At tau = 1 this is
  torch's estimator exactly; tau scales it the way the ReinMax README's straight-through baseline does.
* ``reinmax`` (Liu et al. 2023, arXiv:2304.08612; ``reinmax/reinmax.py`` of microsoft/ReinMax):
  2 J((D + q) / 2) dy - J(pi) dy / 2 with pi = softmax(x) (no temperature) and q = softmax(x / tau).
  Since J((D + q) / 2) dy = (D + q) / 2 * (dy - (dy_k + <dy, q>) / 2), the first term is
  (D + q) * (dy - (dy_k + <dy, q>) / 2). The reference code also subtracts the row mean of the result;
  both terms already sum to zero over K (sum_j p_j (dy_j - <dy, p>) = 0 for any p summing to 1), so
  that is a no-op here. Where the derivation comes from: E[f(D)] has gradient
  sum_i sum_j pi_i pi_j (f(I_i) - f(I_j)) (I_i - pi); straight-through replaces f(I_i) - f(I_j) by a
  first-order (Euler) step, ReinMax by the trapezoid (Heun) rule, exact when f is quadratic: at tau = 1
  its expectation is the exact gradient for every quadratic f (tests/test_estimators.py checks this
  by enumeration).
* ``gst``, gapped straight-through (Fan et al. 2022, ICML; ``gst_mover`` in ``model/basic.py`` of
  chijames/GST, its GST-1.0 variant): J(s) dy / tau with s = softmax(x' / tau), where x' is x moved,
  with the move held constant, so that the sampled logit is the largest and every other one lies at
  least ``GST_GAP`` below it: x'_k = max(x), x'_j = min(x_j, max(x) - gap) for j != k. Deterministic
  given k: no noise beyond the sample.
* ``gumbel_rao``, Rao-Blackwellized ST-GS (Paulus et al. 2021, arXiv:2010.04838): the ST-GS gradient
  averaged over R draws of the Gumbel noise conditioned on the sampled category,
  (1/R) sum_r J(p_r) dy / tau with p_r = softmax((x + g_r) / tau) and g_r ~ G | argmax(x + G) = k.
  The derivative is taken through x with g_r held fixed, as nshepperd/gumbel-rao-pytorch and
  ``rao_gumbel`` of chijames/GST do: only then is E[estimate | k] the conditional mean of ST-GS, so
  that Gumbel-Rao has ST-GS's expectation with less variance (the paper's text differentiates through
  g_r too; nshepperd's README explains why that breaks the equality). The conditional draw, top-down
  (Maddison et al. 2014, arXiv:1411.0030): with fresh Exp(1) noise E_j, the winner's perturbed logit
  is z_k = lse(x) - log E_k (the max of Gumbels has location lse(x)), and the others are truncated
  below it, z_j = -log(E_j exp(-x_j) + exp(-z_k)). Only z - z_k matters to the softmax, and
  exp(z_j - z_k) = pi_j E_k / (E_j + pi_j E_k) with pi = softmax(x): so
  p_r = w / sum(w), w_k = 1, w_j = (pi_j E_k / (E_j + pi_j E_k)) ** (1 / tau), which needs one log per
  element (the contract's E = -log1p(-u)) and no exp at tau = 1. Repeat r draws E from the contract's
  stream 1 + r (docs/DESIGN.md section 3), so every backend regenerates the same R draws and nothing
  R-sized is kept.

Rows whose forward is NaN (a NaN logit, no finite logit, or a +inf one) get a NaN gradient; -inf
categories get 0.
"""

from __future__ import annotations

import torch

from .rng import exponential_from_uniform_ref, math_dtype, uniform_ref

ESTIMATORS = ("st", "reinmax", "gumbel_rao", "gst", "plain_st")
# GST-1.0 (chijames/GST's README runs `--mode gst-1.0`): the sampled logit leads the others by >= 1.
GST_GAP = 1.0
# Gumbel-Rao's repeat r draws its noise from Philox stream RAO_FIRST_STREAM + r; stream 0 is the sample's.
RAO_FIRST_STREAM = 1


def check_sample(fn: str, estimator: str, sample) -> None:
    """The backward of an estimator other than "st" needs the forward's sampled category (the autograd passes
    it); ValueError naming the argument otherwise."""
    if estimator != "st" and sample is None:
        raise ValueError(f"{fn}(): argument 'sample' (the forward's argmax) is required by estimator {estimator!r}")


def sample_index_ref(one_hot: torch.Tensor) -> torch.Tensor:
    """The category of each row of a hard sample on the ``(outer, K, inner)`` layout: int64 ``(outer, 1, inner)``,
    the index of the row's one (0 for a NaN row, argmax's first NaN). The ``sample`` the estimators' backward takes."""
    return one_hot.argmax(1, keepdim=True)


def check_record_sample(record_sample: bool, hard: bool, fn: str) -> None:
    """Raises ValueError where a forward is asked to record the category of a soft sample, which has none."""
    if record_sample and not hard:
        raise ValueError(f"{fn}(): only a hard sample has a category to record")


def estimator_index(estimator: str, hard: bool, rao_samples: int, fn: str = "gumbel_softmax") -> int:
    """The position of ``estimator`` in ``ESTIMATORS``, after checking that the combination is valid.

    Raises ValueError, naming the argument, for an unknown name, for an estimator other than ``"st"``
    without ``hard`` (they are gradients of the one-hot sample, and the soft sample has an exact
    gradient), and for ``rao_samples < 1``.
    """
    if estimator not in ESTIMATORS:
        names = ", ".join(repr(name) for name in ESTIMATORS)
        raise ValueError(f"{fn}(): argument 'estimator' must be one of {names}, but got {estimator!r}")
    if estimator != "st" and not hard:
        raise ValueError(
            f"{fn}(): argument 'estimator'={estimator!r} requires hard=True (it is a gradient estimator for the "
            "one-hot sample; the soft sample has an exact gradient), but got hard=False"
        )
    if rao_samples < 1:
        raise ValueError(f"{fn}(): argument 'rao_samples' must be a positive integer, but got {rao_samples}")
    return ESTIMATORS.index(estimator)


def softmax_vjp_ref(p: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """J(p) dy = p * (dy - <dy, p>) over dim 1: the vector-Jacobian product of a softmax with output p."""
    return p * (dy - (dy * p).sum(dim=1, keepdim=True))


def _reinmax(x, dy, one_hot, tau):
    q = torch.softmax(x / tau, dim=1)
    dy_k = (dy * one_hot).sum(dim=1, keepdim=True)
    heun = (one_hot + q) * (dy - (dy_k + (dy * q).sum(dim=1, keepdim=True)) / 2)
    return heun - softmax_vjp_ref(torch.softmax(x, dim=1), dy) / 2


# The gradients below are functions of the logits in every part, the gap's move and the conditional noise
# included (they are held fixed only in the surrogate whose derivative each gradient is): so autograd through
# them gives the derivatives of the estimator itself, which a backward with create_graph returns.


def _gst(x, dy, one_hot, tau):
    top = x.amax(dim=1, keepdim=True)
    gapped = torch.where(one_hot.bool(), top, torch.minimum(x, top - GST_GAP))
    return softmax_vjp_ref(torch.softmax(gapped / tau, dim=1), dy) / tau


def _gumbel_rao(x, dy, one_hot, tau, seed, rao_samples):
    outer, n_cols, inner = x.shape
    pi = torch.softmax(x, dim=1)
    total = torch.zeros_like(x)
    for repeat in range(rao_samples):
        u = uniform_ref(seed, outer, n_cols, inner, x.device, stream=RAO_FIRST_STREAM + repeat)
        e = exponential_from_uniform_ref(u, x.dtype)
        pi_e_k = pi * (e * one_hot).sum(dim=1, keepdim=True)
        # p_r = w / sum(w), w = ratio ** (1 / tau): the softmax of log(ratio) / tau, z - z_k up to a shift.
        weights = torch.where(one_hot.bool(), 1.0, pi_e_k / (e + pi_e_k))
        total = total + softmax_vjp_ref(torch.softmax(torch.log(weights) / tau, dim=1), dy)
    return total / (rao_samples * tau)


def estimator_grad_ref(
    grad: torch.Tensor,
    logits: torch.Tensor,
    sample: torch.Tensor,
    seed: torch.Tensor | int,
    tau: torch.Tensor | float,
    estimator: str,
    rao_samples: int,
) -> torch.Tensor:
    """dL/dlogits under ``estimator`` (any but ``"st"``) of the hard sample whose category is ``sample`` (int64
    ``(outer, 1, inner)``, the forward's argmax) for ``(outer, K, inner)`` logits, given ``grad`` = dL/dsample;
    in the math dtype.

    Written in differentiable torch ops (the sample is a constant), so that its own derivatives follow.
    """
    mdt = math_dtype(logits.dtype)
    x, dy = logits.to(mdt), grad.to(mdt)
    tau = torch.as_tensor(tau, dtype=mdt, device=x.device)
    x_max = x.detach().amax(dim=1, keepdim=True)
    invalid = ~torch.isfinite(x_max) | x.detach().isnan().any(dim=1, keepdim=True)  # the forward's NaN rows
    one_hot = torch.zeros(x.shape, dtype=mdt, device=x.device).scatter(1, sample, 1.0)  # out of place: vmap
    if estimator == "plain_st":
        dx = softmax_vjp_ref(torch.softmax(x / tau, dim=1), dy) / tau
    elif estimator == "reinmax":
        dx = _reinmax(x, dy, one_hot, tau)
    elif estimator == "gst":
        dx = _gst(x, dy, one_hot, tau)
    elif estimator == "gumbel_rao":
        dx = _gumbel_rao(x, dy, one_hot, tau, seed, rao_samples)
    else:
        raise ValueError(f"estimator_grad_ref(): no estimator {estimator!r} here ('st' is the soft sample's gradient)")
    return torch.where(invalid, float("nan"), dx)
