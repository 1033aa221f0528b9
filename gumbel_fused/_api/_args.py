"""Argument checks and conversions shared by the public functions: logits, tau, dim, k, generator, seed.

Errors name the argument and read like torch's own: ``TypeError`` for a wrong type, ``ValueError`` for a
wrong value, ``IndexError`` for a dimension out of range.
"""

from __future__ import annotations

import math
import numbers

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
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


def check_logits(fn: str, logits: object) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{fn}(): argument 'logits' must be Tensor, not {type(logits).__name__}")
    if logits.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{fn}(): argument 'logits' must be a floating point tensor (float16, bfloat16, float32 or "
            f"float64), but got {logits.dtype}"
        )


def check_generator(fn: str, generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{fn}(): argument 'generator' must be torch.Generator, not {type(generator).__name__}")


def check_temperature(fn: str, name: str, value: object) -> None:
    """A temperature must be a positive finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}(): argument '{name}' must be a positive finite float, not {type(value).__name__}")
    if torch.compiler.is_compiling():
        # A Python comparison would make Dynamo guard on the value, so each new tau (annealing)
        # would recompile; eager calls check the value, compiled graphs take it on trust.
        return
    if not 0.0 < value < math.inf:  # also false for NaN
        raise ValueError(f"{fn}(): argument '{name}' must be a positive finite float, but got {value}")


def canonical_dim(dim: object, ndim: int) -> int:
    """``dim`` in ``[0, ndim)``; a scalar tensor is never a 0-dim view here: ``ndim >= 1``."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"argument 'dim' must be int, not {type(dim).__name__}")
    if not -ndim <= dim < ndim:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-ndim}, {ndim - 1}], but got {dim})")
    return dim % ndim


def check_categories(fn: str, logits: torch.Tensor, dim: int) -> None:
    """A draw needs at least one category along ``dim`` (as ``torch.argmax``, an IndexError otherwise)."""
    if logits.shape[dim] == 0:
        raise IndexError(f"{fn}(): cannot draw from dimension {dim} of size 0 (logits of shape {tuple(logits.shape)})")


def check_num_draws(fn: str, k: object, n_categories: int, dim: int) -> None:
    """``k`` draws without replacement need ``0 <= k <= n_categories``."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"{fn}(): argument 'k' must be int, not {type(k).__name__}")
    if not 0 <= k <= n_categories:
        raise ValueError(
            f"{fn}(): argument 'k' must be in [0, {n_categories}] (the size of dimension {dim}), but got {k}"
        )


def temperature_tensor(tau: float, device: torch.device) -> torch.Tensor:
    """tau as the 0-dim fp64 tensor the ops take.

    Under torch.compile, ``ones * tau`` lets Dynamo turn the float into a graph input; ``torch.full``
    would bake its value in and recompile for every new tau.
    """
    if torch.compiler.is_compiling():
        return torch.ones((), dtype=torch.float64, device=device) * tau
    return torch.full((), tau, dtype=torch.float64, device=device)


def categories_view(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """The ``(outer, K, inner)`` view of ``logits`` with the categories ``dim`` in the middle.

    A view keeps the caller's strides (the kernels take any strides); reshape copies only when no such
    view of this memory exists.
    """
    shape = logits.shape
    return logits.reshape(math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1 :]))
