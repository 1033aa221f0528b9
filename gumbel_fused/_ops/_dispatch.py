"""The one dispatch point: which kernel runs an op on which device.

* CPU: the op's C++ entry point (``csrc/``, built on first use by ``gumbel_fused._cpu``), or the reference
  when the C++ kernels could not be built (``_cpu`` then warned once).
* CUDA: the op's Triton launcher, from ``gumbel_fused._triton.<module>``, imported on first use.
* Any other device: the reference, which is the op's own body (``custom_op``'s default kernel).

The C++ entry points take scalars as C++ doubles: the ops' 0-dim floating tensors (tau) are read with
``item()``, which on a CPU tensor costs no sync.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from .. import _cpu


def _cpp_arguments(args: tuple) -> tuple:
    return tuple(a.item() if isinstance(a, torch.Tensor) and a.dim() == 0 and a.is_floating_point() else a for a in args)


# The one library of the project's ops. ``Library.define`` + ``impl`` rather than ``custom_op``: custom_op
# wraps each kernel in a dynamo-disabling shim that imports torch._dynamo on the first call (about 2 s).
LIBRARY = torch.library.Library("gumbel_fused", "DEF")


def define_op(schema: str, reference: Callable, *, cpp: str, triton: str):
    """Define ``gumbel_fused::<schema>`` and give it its kernels; returns the op (``torch.ops.gumbel_fused.<name>``).

    ``cpp`` names the C++ entry point that serves CPU tensors, ``triton`` the ``"module.launcher"`` under
    ``gumbel_fused._triton`` that serves CUDA tensors; ``reference`` serves every other device, and CPU
    when the C++ kernels are unavailable.
    """
    name = schema.split("(", 1)[0]
    triton_module, triton_launcher = triton.rsplit(".", 1)

    def cpu_kernel(*args):
        kernels = _cpu.load_cpu_kernels()
        if kernels is None:
            return reference(*args)
        return getattr(kernels, cpp)(*_cpp_arguments(args))

    def cuda_kernel(*args):
        module = importlib.import_module(f"gumbel_fused._triton.{triton_module}")
        return getattr(module, triton_launcher)(*args)

    LIBRARY.define(schema)
    LIBRARY.impl(name, reference, "CompositeExplicitAutograd")
    LIBRARY.impl(name, cpu_kernel, "CPU")
    LIBRARY.impl(name, cuda_kernel, "CUDA")
    return getattr(torch.ops.gumbel_fused, name)
