"""Argument checks and conversions shared by the public functions: logits, tau, dim, k, generator, seed,
gradient estimator.

Errors name the function and the argument and read like torch's own: ``TypeError`` for a wrong type,
``ValueError`` for a wrong value, ``IndexError`` for a dimension out of range.
"""

from __future__ import annotations

import math
import numbers
import operator

import torch
from torch.autograd import forward_ad

from .._ops._dispatch import check_temperature_value, runs_plain_eager
from .._ops.seed import seed_for
from ..reference.estimators import estimator_index

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def draw_seed(device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """One int64 Philox seed from torch's own RNG, as a 0-dim tensor on ``device``: the seed a call on
    ``device`` would draw from the same RNG state.

    With no ``generator`` it comes from the default generator of ``device`` (so ``torch.manual_seed``
    and ``get_rng_state``/``set_rng_state`` govern it) and stays on the device: no host sync on GPU.
    A CPU ``generator`` gives the same seed whatever the device of the logits.
    """
    seed = seed_for(torch.empty(0, device=device), generator)
    return seed if isinstance(seed, torch.Tensor) else torch.tensor(seed, dtype=torch.int64, device=device)


def check_logits(fn: str, logits: object) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{fn}(): argument 'logits' must be Tensor, not {type(logits).__name__}")
    if logits.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{fn}(): argument 'logits' must be a floating point tensor (float16, bfloat16, float32 or "
            f"float64), but got {logits.dtype}"
        )


def check_generator(fn: str, generator: object) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{fn}(): argument 'generator' must be torch.Generator, not {type(generator).__name__}")
    if torch.compiler.is_compiling():
        # Dynamo cannot put a Generator in a graph ("Failed to convert args/kwargs to proxy"). Without
        # fullgraph this raise is a graph break, after which the call runs eagerly with the generator.
        raise RuntimeError(
            f"{fn}(): argument 'generator' is not supported inside torch.compile(fullgraph=True): a graph "
            "cannot draw from a torch.Generator. Seed the default generator (torch.manual_seed) instead, "
            "or call it outside the compiled function."
        )


def checked_temperature(fn: str, name: str, value: object, logits: torch.Tensor | None) -> float | torch.Tensor:
    """A temperature as the ops take it: a float, or a 0-dim floating tensor.

    Numbers (``float``, ``int``, ``Fraction``, NumPy scalars) become floats. A one-element tensor stays a
    tensor when it requires grad (a learnable temperature), when it lives on the GPU (reading it would
    sync), under torch.compile (a new value must not recompile) and under forward-mode AD (it may carry a
    tangent); otherwise it is read as a float.
    Values are checked where that is free: eager floats and CPU tensors. Under torch.compile the CPU
    kernels check at run time and the CUDA kernels give NaN; a CUDA tensor gives NaN. ``logits`` gives the
    dtype whose range bounds tau (None: float64's).
    """
    dtype = torch.float64 if logits is None else logits.dtype
    if type(value) is float and not torch.compiler.is_compiling():  # the common call, without ABC checks
        check_temperature_value(fn, name, value, dtype)
        return value
    if isinstance(value, torch.Tensor):
        return _tensor_temperature(fn, name, value, logits)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}(): argument '{name}' must be float or Tensor, not {type(value).__name__}")
    value = float(value)
    if not torch.compiler.is_compiling():
        # A Python comparison would make Dynamo guard on the value, so each new tau (annealing) would
        # recompile; compiled graphs check it in the kernels instead.
        check_temperature_value(fn, name, value, dtype)
    return value


def _tensor_temperature(fn: str, name: str, tau: torch.Tensor, logits: torch.Tensor | None) -> float | torch.Tensor:
    if tau.numel() != 1:
        raise ValueError(
            f"{fn}(): argument '{name}' must be a number or a one-element tensor, but got a tensor of shape "
            f"{tuple(tau.shape)} (one temperature per element is not supported)"
        )
    if tau.dtype == torch.bool or tau.is_complex():
        raise TypeError(f"{fn}(): argument '{name}' must be a real number or tensor, but got a {tau.dtype} tensor")
    if logits is not None and tau.device != logits.device and tau.device.type != "cpu":
        raise RuntimeError(
            f"{fn}(): expected '{name}' on the device of 'logits' ({logits.device}) or on the CPU, but got "
            f"'{name}' on {tau.device}"
        )
    tau = tau.reshape(()) if tau.is_floating_point() else tau.to(torch.float64).reshape(())
    if tau.device.type != "cpu" or not runs_plain_eager(tau):  # compile, torch.func: a tensor it stays
        return tau
    value = tau.item()
    check_temperature_value(fn, name, value, torch.float64 if logits is None else logits.dtype)
    differentiable = tau.requires_grad or forward_ad._current_level >= 0  # a grad, or maybe a tangent
    return tau if differentiable else value


def check_estimator(fn: str, estimator: object, hard: object, rao_samples: object, tau: object = None) -> None:
    """``estimator`` a known name, allowed with ``hard`` (every one but "st" needs it) and with ``tau`` (none but
    "st" has a derivative in tau), and ``rao_samples`` a positive int (checked whatever the estimator, so a typo
    fails before it matters)."""
    if not isinstance(estimator, str):
        raise TypeError(f"{fn}(): argument 'estimator' must be str, not {type(estimator).__name__}")
    if isinstance(rao_samples, bool) or not isinstance(rao_samples, int):
        raise TypeError(f"{fn}(): argument 'rao_samples' must be int, not {type(rao_samples).__name__}")
    estimator_index(estimator, bool(hard), rao_samples, fn)
    if estimator != "st" and isinstance(tau, torch.Tensor) and tau.requires_grad:
        raise ValueError(
            f"{fn}(): argument 'estimator'={estimator!r} defines no gradient in tau, but got a tau that requires "
            "grad (a learnable temperature needs estimator='st')"
        )


def canonical_dim(fn: str, dim: object, ndim: int) -> int:
    """``dim`` in ``[0, ndim)``. Like torch, anything with ``__index__`` but a bool is an int: NumPy
    integers and 0-dim integer tensors. A scalar tensor is never a 0-dim view here: ``ndim >= 1``."""
    if type(dim) is int and -ndim <= dim < ndim:  # the common call
        return dim % ndim
    is_scalar_tensor = isinstance(dim, torch.Tensor) and dim.dim() == 0 and dim.dtype != torch.bool
    if isinstance(dim, bool) or (isinstance(dim, torch.Tensor) and not is_scalar_tensor):
        raise TypeError(f"{fn}(): argument 'dim' must be int, not {type(dim).__name__}")
    try:
        dim = operator.index(dim)
    except TypeError:
        raise TypeError(f"{fn}(): argument 'dim' must be int, not {type(dim).__name__}") from None
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


def categories_view(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """The ``(outer, K, inner)`` view of ``logits`` with the categories ``dim`` in the middle.

    A view keeps the caller's strides (the kernels take any strides); reshape copies only when no such
    view of this memory exists.
    """
    shape = logits.shape
    return logits.reshape(math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1 :]))
