"""Autograd for the differentiable ops: one set of rules per op, and the ways a call reaches them.

An op's rules are ``setup_context(ctx, inputs, output)``, ``backward(ctx, *grads)`` and
``jvp(ctx, *tangents)`` (tangents in the order of the inputs, None for an input without one), and optionally
``eager_forward(ctx, op, args)``, the forward of the eager Function below (``op.direct(*args)`` by default), which
may leave on ``ctx`` what its kernel recorded for ``setup_context``.
:func:`differentiable` registers them on the op and wraps them in two ``autograd.Function`` classes. A call
takes one of four ways:

* plain eager on CPU, with a gradient wanted in the first argument only (the training call): the op's C++
  autograd node (``define_op``'s ``cpp_with_grad``, csrc/autograd.cpp), these rules' first-order backward in
  C++; it hands back to them any backward that is not plain eager (create_graph, batched grads, modes). At
  the VAE's size it took 16-65 us off a forward + backward against the Function below (measured on the
  2-core CI machine, 1 or 2 threads, back to back or between eager calls).
* plain eager otherwise: a Function whose ``forward`` takes ``ctx`` and runs the kernel directly.
  A Function with a separate ``setup_context`` binds its arguments with ``inspect.signature`` on every
  call, about 40 us (measured); this one costs a few.
* ``torch.func`` transforms (grad, jacrev, jvp, jacfwd, vmap): the same rules as a Function with
  ``setup_context``, which functorch requires, and a vmap rule generated from the ops' own batching rules.
* torch.compile, export, dispatch modes: the registered op, whose autograd is ``register_autograd`` of
  the same rules (Dynamo does not trace a Function with a custom ``jvp``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.autograd import forward_ad

from ._dispatch import LIBRARY, KernelOp, runs_plain_eager

_SAVED_TENSOR = object()  # marks a tensor's place in ctx.saved_values (None is a value: an absent tensor)


def save_values(ctx, *values) -> None:
    """Keep ``values`` for the rules' backward and jvp: tensors through ``save_for_backward`` (version checks,
    saved-tensor hooks) and, where a jvp may follow, ``save_for_forward``; anything else (a float tau, an int
    seed) as is."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    ctx.save_for_backward(*tensors)
    if forward_ad._current_level >= 0 or torch._C._are_functorch_transforms_active():
        ctx.save_for_forward(*tensors)
    ctx.saved_values = tuple(_SAVED_TENSOR if isinstance(v, torch.Tensor) else v for v in values)


def saved_values(ctx) -> tuple:
    """The ``values`` of :func:`save_values`, in their order."""
    tensors = iter(ctx.saved_tensors)
    return tuple(next(tensors) if v is _SAVED_TENSOR else v for v in ctx.saved_values)


def differentiable(op: KernelOp, rules: type) -> Callable:
    """``op`` with autograd (reverse and forward mode, any order, torch.func) from ``rules``'s staticmethods.

    Returns a function with the op's arguments (the temperature may be a float or a tensor that requires
    grad) that picks the cheapest correct way in for each call.
    """
    torch.library.register_autograd(op.name, rules.backward, setup_context=rules.setup_context, lib=LIBRARY)
    name = op.name.split("::")[1]

    eager_forward = getattr(rules, "eager_forward", None)

    def forward_with_context(ctx, *args):
        output = eager_forward(ctx, op, args) if eager_forward else op.direct(*args)
        rules.setup_context(ctx, args, output)
        return output

    common = {"backward": staticmethod(rules.backward), "jvp": staticmethod(rules.jvp)}
    eager = type(f"{name}_eager", (torch.autograd.Function,), {"forward": staticmethod(forward_with_context), **common})
    transformable = type(
        f"{name}_transformable",
        (torch.autograd.Function,),
        {
            "forward": staticmethod(op.__call__),
            "setup_context": staticmethod(rules.setup_context),
            "generate_vmap_rule": True,
            **common,
        },
    )

    def call(*args):
        # Every way in sees the schema's full argument list, so the rules' setup_context needs no defaults of
        # its own (the dispatcher's autograd fills them in the same way).
        args = op.complete(args)
        if runs_plain_eager(args[0]):
            if forward_ad._current_level >= 0:
                return eager.apply(*args)
            if torch.is_grad_enabled() and torch._C._any_requires_grad(*args):
                if args[0].is_cpu and not torch._C._any_requires_grad(*args[1:]):
                    output = op.direct_with_grad(*args)
                    if output is not None:
                        return output
                return eager.apply(*args)
            return op.direct(*args)
        if torch._C._are_functorch_transforms_active():
            return transformable.apply(*args)
        return op(*args)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{op.name}`` with autograd; see :func:`gumbel_fused._ops._autograd.differentiable`."
    return call
