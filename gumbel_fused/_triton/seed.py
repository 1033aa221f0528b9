"""A contract seed from a reservation in a CUDA generator's Philox stream, derived on the device.

Eager calls derive the seed on the host (``reference.rng.seed_from_reservation``), where the reservation's
seed and offset are plain values. During CUDA graph capture they are device tensors that every replay
refills, so the seed must be derived on the device at run time: this one-program kernel does it, and
each replay then samples anew, exactly as a sequence of eager calls from the same generator state.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference.rng import SPLITMIX_GAMMA, SPLITMIX_MIX

GAMMA = tl.constexpr(SPLITMIX_GAMMA)
MIX_A = tl.constexpr(SPLITMIX_MIX[0])
MIX_B = tl.constexpr(SPLITMIX_MIX[1])


@triton.jit
def seed_from_reservation(philox_seed, philox_offset):
    """``reference.rng.seed_from_reservation`` on int64 values: uint64 arithmetic wraps as its masks do."""
    z = philox_seed.to(tl.uint64, bitcast=True) + (philox_offset.to(tl.uint64, bitcast=True) // 4 + 1) * GAMMA
    z = (z ^ (z >> 30)) * MIX_A
    z = (z ^ (z >> 27)) * MIX_B
    return ((z ^ (z >> 31)) >> 1).to(tl.int64, bitcast=True)


@triton.jit
def _reservation_seed_kernel(philox_seed_ptr, philox_offset_ptr, intragraph_offset, seed_ptr):
    offset = tl.load(philox_offset_ptr) + intragraph_offset
    tl.store(seed_ptr, seed_from_reservation(tl.load(philox_seed_ptr), offset))


def reservation_seed(philox_seed: torch.Tensor, philox_offset: torch.Tensor, intragraph_offset: int) -> torch.Tensor:
    """The contract seed of the reservation ``Generator.philox_state`` returned, as a 0-dim int64 tensor on
    the device of its ``philox_seed`` and ``philox_offset`` tensors."""
    seed = torch.empty((), dtype=torch.int64, device=philox_seed.device)
    _reservation_seed_kernel[(1,)](philox_seed, philox_offset, intragraph_offset, seed)
    return seed
