"""``gumbel_softmax``: a drop-in for ``torch.nn.functional.gumbel_softmax``, fused into one kernel a direction."""

from __future__ import annotations

import warnings

import torch

from .._ops import gumbel_softmax as ops
from .._ops.seed import seed_for
from ._args import canonical_dim, check_estimator, check_generator, check_logits, checked_temperature

_FN = "gumbel_softmax"


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float | torch.Tensor = 1.0,
    hard: bool = False,
    eps: float = 1e-10,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    estimator: str = "st",
    rao_samples: int = 10,
) -> torch.Tensor:
    """Sample from the Gumbel-softmax (Concrete) distribution, fused into one kernel per direction.

    Same signature and semantics as :func:`torch.nn.functional.gumbel_softmax`
    (Jang et al. 2017, arXiv:1611.01144; Maddison et al. 2017, arXiv:1611.00712):
    ``y = softmax((logits + g) / tau, dim)`` with ``g ~ Gumbel(0, 1)``. Differentiable in ``logits`` and in a
    tensor ``tau``, in reverse mode (to any order) and forward mode, and under ``torch.func`` transforms and
    ``torch.compile(fullgraph=True)``.

    Args:
        logits: unnormalized log-probabilities, any shape, fp16/bf16/fp32/fp64. ``-inf`` marks an
            impossible category: it gets exactly 0 and is never drawn. A slice along ``dim`` with no
            finite logit, or holding a NaN, gives NaN for that slice only (as ``torch.softmax``).
        tau: positive temperature: a number, or a one-element tensor (a learnable temperature gets its
            gradient). It must lie in the normal range of the precision the logits are sampled in
            (fp32 for fp16/bf16/fp32 logits, fp64 for fp64): beyond it ``(logits + g) / tau`` is inf or
            denormal. As with torch, a tau small enough for ``(logits + g) / tau`` to overflow gives NaN.
            Checked eagerly (``ValueError``) for numbers and CPU tensors; a CUDA tensor cannot be read
            without a host sync, so an invalid one gives NaN samples, and so does an invalid tau inside
            ``torch.compile`` on CUDA (on the CPU the compiled kernel raises the ``ValueError``).
        hard: if True, return an exact one-hot (0.0 and 1.0) of the sample's argmax, whose gradient
            is that of the soft sample (straight-through).
        eps: deprecated and ignored, as in torch.
        dim: the dimension holding the categories (an int, NumPy integer or 0-dim integer tensor).
        generator: the ``torch.Generator`` to draw the seed from; defaults to the logits' device's. Not
            supported inside ``torch.compile(fullgraph=True)`` (a ``RuntimeError`` says so).
        estimator: the gradient of the hard sample, fused into the backward kernel; every one but ``"st"``
            requires ``hard=True`` and a tau without gradient, and none changes the sample (the same one-hot
            for the same RNG state). ``"st"``: straight-through Gumbel-softmax, the soft sample's gradient
            (as torch). ``"reinmax"``: ReinMax (Liu et al. 2023), second order: exact in expectation for a
            quadratic loss at tau = 1 (its authors use tau >= 1). ``"gumbel_rao"``: Gumbel-Rao (Paulus et al.
            2021), ST-GS averaged over ``rao_samples`` draws of the noise conditioned on the sample: ST-GS's
            mean with less variance. ``"gst"``: gapped straight-through (Fan et al. 2022, gap 1), no noise.
            ``"plain_st"``: straight-through through softmax(logits / tau), torch's
            ``OneHotCategoricalStraightThrough`` at tau = 1. Formulas: ``gumbel_fused/reference/estimators.py``.
        rao_samples: the conditional noise draws a ``"gumbel_rao"`` gradient averages, at least 1.

    Returns:
        A tensor with the shape, dtype and device of ``logits`` (with a tensor ``tau`` of more
        dimensions than ``logits``, the broadcast shape, as torch).
    """
    check_logits(_FN, logits)
    tau_arg, tau = tau, checked_temperature(_FN, "tau", tau, logits)
    check_generator(_FN, generator)
    check_estimator(_FN, estimator, hard, rao_samples, tau_arg)
    if eps != 1e-10:
        warnings.warn("`eps` parameter is deprecated and has no effect.", stacklevel=2)
    if logits.dim() == 0:
        # torch treats a scalar as one category; keep the drop-in behaviour.
        return gumbel_softmax(
            logits.view(1), tau_arg, hard, dim=dim, generator=generator, estimator=estimator, rao_samples=rao_samples
        ).view(())
    dim = canonical_dim(_FN, dim, logits.dim())
    if logits.numel() == 0:
        y = logits.clone()  # a clone, not empty_like: it keeps the autograd graph
    else:
        y = ops.gumbel_softmax(logits, seed_for(logits, generator), tau, bool(hard), dim, estimator, rao_samples)
    if isinstance(tau_arg, torch.Tensor) and tau_arg.dim() > logits.dim():
        return y.view((1,) * (tau_arg.dim() - logits.dim()) + tuple(logits.shape))  # torch broadcasts
    return y
