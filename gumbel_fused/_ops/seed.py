"""Seeds: one int64 per call, drawn from torch's own generators, so ``torch.manual_seed`` and the RNG
states govern the samples (docs/DESIGN.md section 3).

* CPU, or an explicit ``generator``: ``torch.randint`` (a 0-dim int64 tensor on the logits' device); for an
  eager call on CPU logits and a CPU generator (the default one or the caller's), the same draw made in C++
  (``seed`` in csrc/bindings.cpp) and returned as a Python int, which the C++ kernels take as it is.
* The default CUDA generator: a reservation of 4 values in its Philox stream (``Generator.philox_state``,
  the protocol torch's own CUDA random kernels use), mapped to a seed by
  ``reference.rng.seed_from_reservation``. Outside graph capture the reservation is two host integers, so
  the seed is a Python int that the kernels take as a scalar argument: no seed kernel, no host sync, one
  launch per direction. During capture the reservation is two device tensors that each replay refills,
  and a one-program kernel derives the seed on the device (``_triton.seed``), so replays sample anew.
  Under torch.compile the ``gumbel_fused::cuda_seed`` op does the same inside the graph, so compiled and
  eager calls draw the same seeds; under ``torch.func`` transforms ``torch.randint`` keeps vmap's
  ``randomness`` modes.
"""

from __future__ import annotations

import importlib

import torch

from .. import _cpu
from ..reference.rng import seed_from_reservation
from ._dispatch import LIBRARY, in_plain_eager_context

# Seeds are drawn from [0, 2**63 - 1): torch.randint's exclusive upper bound must fit in int64.
SEED_HIGH = 2**63 - 1
# Philox values reserved per seed: one counter, whose four words are the most a reservation can grant.
RESERVATION = 4
_HAS_PHILOX_STATE = hasattr(torch.Generator, "philox_state")  # torch >= 2.14


def reserve_cuda_seed(device: torch.device) -> int | torch.Tensor:
    """The seed of a new reservation in ``device``'s default CUDA generator: an int, or under graph capture a
    0-dim int64 tensor that each replay recomputes."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    philox_seed, philox_offset, intragraph_offset = torch.cuda.default_generators[index].philox_state(RESERVATION)
    if philox_seed.is_cuda:  # capturing: the values exist only when the graph replays
        launcher = importlib.import_module("gumbel_fused._triton.seed").reservation_seed
        return launcher(philox_seed, philox_offset, int(intragraph_offset))
    return seed_from_reservation(int(philox_seed), int(philox_offset) + int(intragraph_offset))


def seed_for(logits: torch.Tensor, generator: torch.Generator | None = None) -> int | torch.Tensor:
    """A seed for one call on ``logits``: a 0-dim int64 tensor on their device, or, for an eager call on the
    default CUDA generator or on CPU logits with a CPU generator, possibly a Python int (see the module
    docstring)."""
    if generator is None and logits.is_cuda and _HAS_PHILOX_STATE:
        if in_plain_eager_context():
            return reserve_cuda_seed(logits.device)
        if not torch._C._are_functorch_transforms_active():
            return cuda_seed(logits.device)
    if logits.is_cpu and (generator is None or generator.device.type == "cpu") and in_plain_eager_context():
        kernels = _cpu.load_cpu_kernels()
        if kernels is not None:
            return kernels.seed(generator)  # torch.randint's own draw, made in C++
    # ``generator=`` even when None: that is the ``randint.generator`` overload, which Inductor leaves to
    # aten, so compiled code draws the seed eager code draws. Plain ``randint`` it would replace with its
    # own RNG stream.
    if generator is None:
        return torch.randint(SEED_HIGH, (), generator=None, device=logits.device, dtype=torch.int64)
    seed = torch.randint(SEED_HIGH, (), generator=generator, device=generator.device, dtype=torch.int64)
    # Non-blocking only towards a GPU, where the kernel that reads it is queued behind the copy; the CPU kernels
    # read a CPU seed at once, so a copy from a CUDA generator must have finished.
    return seed.to(logits.device, non_blocking=logits.device.type == "cuda")


# Never merged with another call (nondeterministic_seeded), as aten's random ops.
LIBRARY.define("cuda_seed(Device device) -> Tensor", tags=(torch.Tag.nondeterministic_seeded,))


def _cuda_seed(device: torch.device) -> torch.Tensor:
    seed = reserve_cuda_seed(device)
    return seed if isinstance(seed, torch.Tensor) else torch.full((), seed, dtype=torch.int64, device=device)


LIBRARY.impl("cuda_seed", _cuda_seed, "CompositeExplicitAutograd")


@torch.library.register_fake("gumbel_fused::cuda_seed", lib=LIBRARY)
def _(device):
    return torch.empty((), dtype=torch.int64, device=device)


cuda_seed = torch.ops.gumbel_fused.cuda_seed.default
