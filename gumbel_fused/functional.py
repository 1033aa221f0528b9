"""Public entry point: ``gumbel_softmax``, a drop-in for ``torch.nn.functional.gumbel_softmax``.

This layer only validates arguments, draws the seed and reshapes ``dim`` into the op's
``(outer, K, inner)`` layout; the work happens in the ``gumbel_fused::gumbel_softmax_fwd`` op.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch

from . import _ops

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Seeds are drawn from [0, 2**63 - 1): torch.randint's exclusive upper bound must fit in int64.
_SEED_HIGH = 2**63 - 1


def draw_seed(device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """One int64 Philox seed from torch's own RNG, as a 0-dim tensor on ``device``.

    With no ``generator`` it comes from the default generator of ``device`` (so ``torch.manual_seed``
    and ``get_rng_state``/``set_rng_state`` govern it) and stays on the device: no host sync on GPU.
    A CPU ``generator`` gives the same seed whatever the device of the logits.
    """
    source = device if generator is None else generator.device
    seed = torch.randint(_SEED_HIGH, (), generator=generator, device=source, dtype=torch.int64)
    return seed.to(device, non_blocking=True)


def _check_tau(tau: object) -> None:
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise ValueError(f"gumbel_softmax: tau must be a positive finite number, got {tau!r}")
    if torch.compiler.is_compiling():
        # A Python comparison would make Dynamo guard on tau's value, so each new tau (annealing)
        # would recompile; eager calls check the value, compiled graphs take it on trust.
        return
    if not 0.0 < tau < math.inf:  # also false for NaN
        raise ValueError(f"gumbel_softmax: tau must be a positive finite number, got {tau}")


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float = 1.0,
    hard: bool = False,
    eps: float = 1e-10,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample from the Gumbel-softmax (Concrete) distribution, fused into one kernel per direction.

    Same signature and semantics as :func:`torch.nn.functional.gumbel_softmax`
    (Jang et al. 2017, arXiv:1611.01144; Maddison et al. 2017, arXiv:1611.00712):
    ``y = softmax((logits + g) / tau, dim)`` with ``g ~ Gumbel(0, 1)``.

    Args:
        logits: unnormalized log-probabilities, any shape, fp16/bf16/fp32/fp64. ``-inf`` marks an
            impossible category: it gets exactly 0 and is never drawn. A slice along ``dim`` with no
            finite logit, or holding a NaN, gives NaN for that slice only (as ``torch.softmax``).
        tau: positive temperature.
        hard: if True, return an exact one-hot (0.0 and 1.0) of the sample's argmax, whose gradient
            is that of the soft sample (straight-through).
        eps: deprecated and ignored, as in torch.
        dim: the dimension holding the categories.
        generator: the ``torch.Generator`` to draw the seed from; defaults to the logits' device's.

    Returns:
        A tensor with the shape, dtype and device of ``logits``.
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"gumbel_softmax: logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"gumbel_softmax: logits must be a floating tensor (float16, bfloat16, float32 or "
            f"float64), got dtype {logits.dtype}"
        )
    _check_tau(tau)
    if eps != 1e-10:
        warnings.warn("`eps` parameter is deprecated and has no effect.", stacklevel=2)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"gumbel_softmax: generator must be a torch.Generator, got {generator!r}")
    if logits.dim() == 0:
        # torch treats a scalar as one category; keep the drop-in behaviour.
        return gumbel_softmax(logits.view(1), tau, hard, dim=dim, generator=generator).view(())
    dim = _canonical_dim(dim, logits.dim())

    shape = logits.shape
    outer = math.prod(shape[:dim])
    inner = math.prod(shape[dim + 1 :])
    if logits.numel() == 0:
        return torch.empty_like(logits)
    seed = draw_seed(logits.device, generator)
    tau = _tau_tensor(tau, logits.device)
    # A view keeps the caller's strides (the kernels take any strides); reshape copies only
    # when no (outer, K, inner) view of this memory exists.
    logits3d = logits.reshape(outer, shape[dim], inner)
    return _ops.gumbel_softmax_fwd(logits3d, seed, tau, bool(hard)).view(shape)


def _tau_tensor(tau: float, device: torch.device) -> torch.Tensor:
    """tau as the 0-dim fp64 tensor the op takes.

    Under torch.compile, ``ones * tau`` lets Dynamo turn the float into a graph input; ``torch.full``
    would bake its value in and recompile for every new tau.
    """
    if torch.compiler.is_compiling():
        return torch.ones((), dtype=torch.float64, device=device) * tau
    return torch.full((), tau, dtype=torch.float64, device=device)


def _canonical_dim(dim: int, ndim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"gumbel_softmax: dim must be an int, got {dim!r}")
    if not -ndim <= dim < ndim:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-ndim}, {ndim - 1}], but got {dim})"
        )
    return dim % ndim
