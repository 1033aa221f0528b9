"""The one dispatch point: which kernel runs an op on which device, through the dispatcher or directly.

Every op is a ``torch.library`` op in the ``gumbel_fused`` namespace with three kernels:

* CPU: the op's C++ entry point (``csrc/``, built on first use by ``gumbel_fused._cpu``), or the reference
  when the C++ kernels could not be built (``_cpu`` then warned once).
* CUDA: the op's Triton launcher, from ``gumbel_fused._triton.<module>``, imported on first use.
* Any other device: the reference (``CompositeExplicitAutograd``).

:func:`define_op` returns a :class:`KernelOp`. Calling it on plain eager tensors runs the kernel directly:
the dispatcher's boxing, the Python kernel it calls back and the ``register_autograd`` wrapper cost about
30 us a call (measured on the 2-core CI machine), tens of times the kernel itself at small sizes. Anywhere
the op must be seen as an op (torch.compile, export, ``torch.func`` transforms, dispatch and function
modes, JIT tracing, tensor subclasses), calling it goes through the dispatcher: there the op is traceable,
has a fake, and batches under vmap. Both ways run the same kernels.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import torch

from .. import _cpu
from ..reference.rng import math_dtype

# The one library of the project's ops. ``Library.define`` + ``impl`` rather than ``custom_op``: custom_op
# wraps each kernel in a dynamo-disabling shim that imports torch._dynamo on the first call (about 2 s).
LIBRARY = torch.library.Library("gumbel_fused", "DEF")

# Tensors the kernels can take directly; any other type (FakeTensor, functorch wrappers, subclasses with
# __torch_dispatch__ or __torch_function__) must meet the op through the dispatcher.
_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def in_plain_eager_context() -> bool:
    """No torch.compile tracing, ``torch.func`` transform, dispatch or function mode, or JIT trace.

    ``is_compiling`` comes first: under Dynamo the rest is never traced (Dynamo folds it to True).
    """
    return not (
        torch.compiler.is_compiling()
        or torch._C._are_functorch_transforms_active()
        or torch._C._len_torch_dispatch_stack()
        or torch._C._is_torch_function_mode_enabled()
        or torch._C._get_tracing_state()
    )


def runs_plain_eager(tensor: torch.Tensor) -> bool:
    """Whether calling a kernel directly on ``tensor`` is indistinguishable from calling the op.

    A legacy batched tensor is a plain ``torch.Tensor`` with no storage: the gradient that
    ``torch.autograd.grad(..., is_grads_batched=True)`` passes to a backward (0.1 us to rule out).
    """
    return (
        in_plain_eager_context()
        and type(tensor) in _PLAIN_TENSOR_TYPES
        and not torch._C._functorch.is_legacy_batchedtensor(tensor)
    )


def check_temperature_value(fn: str, name: str, value: float, dtype: torch.dtype) -> None:
    """A temperature must be a normal, finite, positive number in the math dtype of ``dtype`` logits.

    The kernels compute ``(x + g) / tau`` in that dtype (fp32 for fp16/bf16/fp32 logits, fp64 for fp64):
    a tau above its largest finite value becomes inf there (every sample the same), and one below its
    smallest normal value is denormal or zero (z overflows to inf: NaN rows).
    """
    low, high = _TEMPERATURE_RANGE[dtype]
    if low <= value <= high:  # false for NaN
        return
    if not 0.0 < value < math.inf:
        raise ValueError(f"{fn}(): argument '{name}' must be a positive finite number, but got {value}")
    raise ValueError(
        f"{fn}(): argument '{name}' must be in [{low}, {high}] (the normal range of {math_dtype(dtype)}, the "
        f"precision {dtype} logits are sampled in), but got {value}"
    )


# The normal range of each logits dtype's math dtype (torch.finfo costs a microsecond a call).
_TEMPERATURE_RANGE = {
    dtype: (torch.finfo(math_dtype(dtype)).tiny, torch.finfo(math_dtype(dtype)).max)
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}


def temperature_tensor(tau: float | torch.Tensor, device: torch.device) -> torch.Tensor:
    """tau as the 0-dim tensor the ops' schemas take (a tensor stays as it is).

    Under torch.compile, ``ones * tau`` lets Dynamo turn the float into a graph input; ``torch.full``
    would bake its value in and recompile for every new tau.
    """
    if isinstance(tau, torch.Tensor):
        return tau
    if torch.compiler.is_compiling():
        return torch.ones((), dtype=torch.float64, device=device) * tau
    return torch.full((), tau, dtype=torch.float64, device=device)


def seed_value(op_name: str, seed: torch.Tensor) -> int:
    """The value of a seed given as a tensor (the schema's 0-dim int64), for the kernels that take an int."""
    if seed.dim() != 0 or seed.dtype != torch.int64 or not seed.is_cpu:
        raise ValueError(
            f"{op_name}: argument 'seed' must be a 0-dim int64 CPU tensor, got {seed.dtype} of shape "
            f"{tuple(seed.shape)} on {seed.device}"
        )
    return int(seed)


class KernelOp:
    """A ``gumbel_fused`` op: the registered ``torch.library`` op and the direct call of its kernels.

    ``op(*args)`` takes the schema's arguments, except that a 0-dim Tensor argument may be a Python scalar
    (a float tau, an int seed), which the direct path passes on as it is: no tensor is made per call.
    Attributes: ``name`` (``"gumbel_fused::<name>"``) and ``overload`` (the ``OpOverload``, for opcheck and
    registrations).
    """

    def __init__(self, schema: str, reference: Callable, *, cpp: str, triton: str | None, temperature: str | None,
                 rowwise: tuple[str, ...], cpp_with_grad: str | None = None):
        name = schema.split("(", 1)[0]
        LIBRARY.define(schema)
        LIBRARY.impl(name, lambda *args: self._run(self._reference, args), "CompositeExplicitAutograd")
        LIBRARY.impl(name, lambda *args: self._cpu_kernel(args, validate=True), "CPU")
        LIBRARY.impl(name, lambda *args: self._run(self._cuda_kernel, args), "CUDA")
        self.name = f"gumbel_fused::{name}"
        self.overload = getattr(torch.ops.gumbel_fused, name).default
        arguments = self.overload._schema.arguments
        names = [a.name for a in arguments]
        self._defaults = tuple(a.default_value for a in arguments)
        self._tensor_arguments = {i for i, a in enumerate(arguments) if isinstance(a.type, torch.TensorType)}
        self._temperature = (names.index(temperature), temperature) if temperature else None
        self._seed = names.index("seed") if "seed" in names else None
        self._rowwise = tuple(names.index(a) for a in rowwise)
        self._dim = names.index("dim") if rowwise else None
        # The reference and Triton launchers take the arguments without dim: before it, positions match.
        if rowwise and temperature and self._temperature[0] > self._dim:
            raise ValueError(f"{schema}: 'dim' must follow the temperature argument")
        self._reference = reference
        self._cpp, self._cpp_with_grad = cpp, cpp_with_grad
        self._cpp_entries: dict[str, Callable] = {}  # the C++ functions by name, once the kernels are loaded
        self._triton = triton.rsplit(".", 1) if triton else None

    def __call__(self, *args):
        if runs_plain_eager(args[0]):
            return self.direct(*args)
        return self.overload(*self._scalars_as_tensors(args))

    def _scalars_as_tensors(self, args: tuple) -> tuple:
        """The schema's Tensor arguments given as Python scalars (a float tau, an int seed) as 0-dim tensors."""
        device = args[0].device
        return tuple(
            a if index not in self._tensor_arguments or isinstance(a, torch.Tensor)
            else temperature_tensor(a, device) if isinstance(a, float)
            else torch.tensor(a, dtype=torch.int64, device=device)
            for index, a in enumerate(args)
        )

    def direct(self, *args, **options):
        """The kernel of the first argument's device, called without the dispatcher or autograd.

        ``options``: keyword arguments that every backend's kernel of the op takes (an extra output it can write
        in the same pass); where a kernel returns several tensors, each is in the caller's shape."""
        first = args[0]
        if first.is_cpu:
            return self._cpu_kernel(args, validate=False, options=options)
        if first.is_cuda:
            return self._run(self._cuda_kernel, args, options)
        return self._run(self._reference, args, options)

    def complete(self, args: tuple) -> tuple:
        """``args`` with omitted trailing arguments filled from the schema's defaults (a caller may omit them,
        and the dispatcher drops those equal to their defaults before calling a Python kernel)."""
        return args + self._defaults[len(args) :] if len(args) < len(self._defaults) else args

    def _run(self, kernel: Callable, args: tuple, options: dict | None = None):
        """``kernel`` on the ``(outer, K, inner)`` views of the rowwise arguments (and without ``dim``), its
        output (or each of its outputs) viewed back: its middle dimensions take the place of ``dim`` in the
        caller's shape. ``options`` go to ``kernel`` as keyword arguments."""
        args, options = self.complete(args), options or {}
        if self._dim is None:
            return kernel(*args, **options)
        shape, dim = args[0].shape, args[self._dim]
        args = [*args[: self._dim], *args[self._dim + 1 :]]
        if len(shape) == 3 and dim == 1:
            return kernel(*args, **options)
        outer, inner = math.prod(shape[:dim]), math.prod(shape[dim + 1 :])
        for index in self._rowwise:
            index -= index > self._dim  # its place once dim is gone
            # An optional rowwise tensor may be None; each keeps its own size on dim (a per-row tensor has 1
            # there). Sizes as ints, not a tuple: 2 us less.
            if args[index] is not None:
                args[index] = args[index].reshape(outer, args[index].shape[dim], inner)
        out = kernel(*args, **options)
        if isinstance(out, tuple):
            return tuple(o.view(*shape[:dim], *o.shape[1:-1], *shape[dim + 1 :]) for o in out)
        return out.view(*shape[:dim], *out.shape[1:-1], *shape[dim + 1 :])

    def direct_with_grad(self, *args):
        """The forward of CPU ``args`` through its C++ autograd node (``cpp_with_grad``), which differentiates it
        in the first argument only; None where the op has no such node or the C++ kernels are unavailable."""
        entry = self._cpp_with_grad and self._cpu_entry(self._cpp_with_grad)
        return entry(*self._cpu_arguments(args, validate=False)) if entry else None

    def _cpu_entry(self, name: str) -> Callable | None:
        entry = self._cpp_entries.get(name)
        if entry is None:
            kernels = _cpu.load_cpu_kernels()
            if kernels is None:
                return None
            entry = self._cpp_entries[name] = getattr(kernels, name)
        return entry

    def _cpu_arguments(self, args: tuple, validate: bool) -> tuple:
        # The C++ entry points take the schema's arguments, dim included (they make the (outer, K, inner)
        # views themselves, see csrc/rowwise.h), the seed as a C++ int64 and the temperature as a C++ double.
        # ``validate``: the dispatcher's way in (compile, transforms) brings a tau nobody has checked (compiled
        # code cannot without a guard); on the CPU reading it is free.
        args = self.complete(args)
        if self._seed is not None and isinstance(args[self._seed], torch.Tensor):
            index = self._seed
            args = (*args[:index], seed_value(self.name, args[index]), *args[index + 1 :])
        if self._temperature is not None:
            index, name = self._temperature
            if validate or type(args[index]) is not float:
                value = float(args[index])
                if validate:
                    check_temperature_value(self.name, name, value, args[0].dtype)
                args = (*args[:index], value, *args[index + 1 :])
        return args

    def _cpu_kernel(self, args: tuple, validate: bool, options: dict | None = None):
        entry = self._cpu_entry(self._cpp)
        if entry is None:
            return self._run(self._reference, args, options)
        return entry(*self._cpu_arguments(args, validate), **(options or {}))

    def _cuda_kernel(self, *args, **options):
        if self._triton is None:
            return self._reference(*args, **options)
        module, launcher = self._triton
        if self._temperature is not None:
            # The Triton kernels take tau by value (no tensor, no launch) or by pointer. By value Triton
            # passes a float as fp32: exact for fp32 math, not for fp64 logits' fp64 math.
            index = self._temperature[0]
            tau = args[index]
            if isinstance(tau, torch.Tensor) and not tau.is_cuda:
                tau = float(tau)  # a CPU tensor with CUDA logits, as torch allows: reading it is free
            if isinstance(tau, float) and args[0].dtype == torch.float64:
                tau = temperature_tensor(tau, args[0].device)
            args = (*args[:index], tau, *args[index + 1 :])
        return getattr(importlib.import_module(f"gumbel_fused._triton.{module}"), launcher)(*args, **options)


def define_op(
    schema: str,
    reference: Callable,
    *,
    cpp: str,
    triton: str | None,
    temperature: str | None = None,
    rowwise: tuple[str, ...] = (),
    cpp_with_grad: str | None = None,
) -> KernelOp:
    """Define ``gumbel_fused::<schema>`` with its kernels and a batching rule; returns its :class:`KernelOp`.

    ``cpp`` names the C++ entry point that serves CPU tensors, ``triton`` the ``"module.launcher"`` under
    ``gumbel_fused._triton`` that serves CUDA tensors (None: the reference, for an op that torch's own CUDA
    kernels serve well); ``reference`` serves every other device, and CPU when the C++ kernels are unavailable.
    ``temperature`` names the 0-dim floating tensor argument that the C++ entry point takes as a double (a Python
    float is accepted in its place).

    ``rowwise`` names the tensor arguments that the op takes in the caller's shape, with the categories on
    the schema's ``dim`` argument (which must follow the temperature); a per-row tensor has 1 on ``dim``, and an
    optional one may be None. The C++ entry point takes the schema's arguments,
    ``dim`` included, and views them itself (``csrc/rowwise.h``); the reference and the Triton launcher take
    ``(outer, K, inner)`` views without ``dim``, made here, and their output is viewed back. Doing this inside
    the op rather than around it keeps two view nodes per direction out of the autograd graph. Without
    ``rowwise`` every kernel takes the schema's arguments as they are.

    ``cpp_with_grad`` names a C++ entry point that runs the CPU forward with its autograd node attached, for
    eager calls that need a gradient in the first argument only (``KernelOp.direct_with_grad``).
    """
    op = KernelOp(
        schema, reference, cpp=cpp, triton=triton, temperature=temperature, rowwise=rowwise, cpp_with_grad=cpp_with_grad
    )
    torch.library.register_vmap(op.name, _per_sample_vmap(op), lib=LIBRARY)
    return op


def _per_sample_vmap(op: KernelOp) -> Callable:
    """A vmap rule that runs the op once per batch element and stacks the results.

    The ops' noise numbers the rows of each call from 0, so no single call reproduces a batch: a batched
    seed (``randomness="different"``) gives each element its own seed, and an unbatched one
    (``randomness="same"``) gives each element the noise an unbatched call would draw. vmap's own fallback
    does the same loop, with a performance warning for every call.
    """

    def rule(info, in_dims, *args):
        def element(b):
            return tuple(a if d is None else a.select(d, b) for a, d in zip(args, in_dims, strict=True))

        return torch.stack([op(*element(b)) for b in range(info.batch_size)]), 0

    return rule
