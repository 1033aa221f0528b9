"""Reference ``gumbel_softmax`` forward and backward on the op layout ``(outer, K, inner)``, softmax over K."""

from __future__ import annotations

import torch

from .estimators import (
    check_record_sample,
    check_sample,
    estimator_grad_ref,
    estimator_index,
    sample_index_ref,
    softmax_vjp_ref,
)
from .rng import gumbel_from_uniform_ref, math_dtype, uniform_ref


def row_shift(x: torch.Tensor) -> torch.Tensor:
    """The max of ``x`` over dim 1 (kept), or 0 where it is not finite: what the logits are shifted by.

    Why shift: ``x + g`` rounds to x's precision, and at |x| = 1e8 fp32's spacing is 8, coarser than the
    noise g, which would be lost (tied 1e8 logits would always give the first index). Softmax and argmax
    are shift-invariant, so ``(x - m) + g`` changes nothing mathematically, and after it every category
    that can matter (x - m above about -100) is small and keeps g to fp32 precision at any magnitude.
    A row whose max is not finite (a NaN, a +inf, all -inf) has no finite softmax and is left as it is.
    """
    return torch.nan_to_num(x.amax(dim=1, keepdim=True), nan=0.0, posinf=0.0, neginf=0.0)


def perturbed_logits_ref(logits: torch.Tensor, seed: torch.Tensor | int, tau: torch.Tensor | float) -> torch.Tensor:
    """``z = ((logits - m) + g) / tau`` for ``(outer, K, inner)`` logits, in the math dtype; m = ``row_shift``."""
    outer, n_cols, inner = logits.shape
    mdt = math_dtype(logits.dtype)
    x = logits.to(mdt)
    g = gumbel_from_uniform_ref(uniform_ref(seed, outer, n_cols, inner, logits.device), mdt)
    return g.add_(x - row_shift(x)).div_(torch.as_tensor(tau, dtype=mdt, device=logits.device))


def softmax_ref(z: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1, normalized by a sum that is accurate at any K.

    ``torch.softmax`` on CPU adds a row's terms one after the other into a vector register, so at
    K = 2**24 its fp32 rows sum to 1 only within ~1e-3 (F.gumbel_softmax inherits this). ``torch.sum``
    uses cascade (pairwise) summation, whose error grows with log K, so the rows here sum to 1 within a
    few ulps (tests/reference/test_gumbel_softmax.py). NaN rows as softmax's: a NaN, a +inf or all -inf.
    """
    e = (z - z.amax(dim=1, keepdim=True)).exp_()
    return e / e.sum(dim=1, keepdim=True)  # not in place: exp's backward needs e (the oracle is differentiated)


def one_hot_argmax(z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Exact one-hot (contiguous, in ``dtype``) of the argmax of ``z`` over dim 1, ties to the first index.

    Rows whose soft sample is NaN (no finite max: a NaN, a +inf, or all -inf) are NaN. The argmax is
    taken on z, not on softmax(z), so that rounding in exp cannot create ties.
    """
    row_max, index = z.max(dim=1, keepdim=True)
    hot = torch.zeros(z.shape, dtype=dtype, device=z.device).scatter_(1, index, 1.0)
    return hot.add_((row_max - row_max).to(dtype))  # + 0 where the max is finite, + NaN where it is not


def gumbel_softmax_fwd_ref(
    logits: torch.Tensor,
    seed: torch.Tensor,
    tau: torch.Tensor | float,
    hard: bool,
    estimator: str = "st",
    rao_samples: int = 10,
    *,
    record_sample: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Forward of the op on ``(outer, K, inner)`` logits; returns a contiguous tensor of the same dtype.

    The sample does not depend on ``estimator`` and ``rao_samples``, which pick the backward: they are only
    checked, so that the op refuses an invalid combination whoever calls it. With ``record_sample`` (hard
    only), returns ``(sample, category)``: each row's category too, int64 ``(outer, 1, inner)``, what
    ``sample_index_ref`` finds in the one-hot (the estimators' backward takes it).
    """
    fn = "gumbel_fused::gumbel_softmax_fwd"
    estimator_index(estimator, hard, rao_samples, fn=fn)
    check_record_sample(record_sample, hard, fn)
    z = perturbed_logits_ref(logits, seed, tau)
    if not hard:
        return softmax_ref(z).to(logits.dtype).contiguous()
    y = one_hot_argmax(z, logits.dtype)
    return (y, sample_index_ref(y)) if record_sample else y


def gumbel_softmax_bwd_ref(
    grad: torch.Tensor,
    saved: torch.Tensor,
    seed: torch.Tensor,
    tau: torch.Tensor | float,
    recompute: bool,
    estimator: str = "st",
    rao_samples: int = 10,
    sample: torch.Tensor | None = None,
) -> torch.Tensor:
    """Backward of the op: ``y * (dy - sum(dy * y)) / tau`` over dim 1 for ``estimator="st"``, else that
    estimator's gradient of the hard sample (``estimators.py``).

    ``saved`` is the logits when ``recompute`` (hard mode: y is regenerated from the seed) and the
    soft output y otherwise; estimators other than ``"st"`` need the logits and ``sample``, the forward's
    category, int64 ``(outer, 1, inner)``.
    """
    fn = "gumbel_fused::gumbel_softmax_bwd"
    if estimator_index(estimator, recompute, rao_samples, fn):
        check_sample(fn, estimator, sample)
        dx = estimator_grad_ref(grad, saved, sample, seed, tau, estimator, rao_samples)
        return dx.to(saved.dtype).contiguous()
    mdt = math_dtype(saved.dtype)
    y = softmax_ref(perturbed_logits_ref(saved, seed, tau)) if recompute else saved.to(mdt)
    dy = grad.to(mdt)
    dx = softmax_vjp_ref(y, dy) / torch.as_tensor(tau, dtype=mdt, device=y.device)
    return dx.to(saved.dtype).contiguous()
