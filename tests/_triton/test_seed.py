"""Seeds from a CUDA Philox reservation derived on the device, and the kernels' seed and temperature taken by
value (eager CUDA calls) or by pointer (compiled graphs, CUDA graphs): the same samples either way.

Without a GPU these run in Triton's interpreter on CPU tensors (see tests/conftest.py).
"""

from __future__ import annotations

import pytest
import torch

from gumbel_fused._triton import gumbel_max, gumbel_softmax, gumbel_topk
from gumbel_fused._triton.seed import reservation_seed
from gumbel_fused.reference.rng import seed_from_reservation

from ..conftest import TRITON_DEVICE

# (seed, offset, intragraph offset) as Generator.philox_state returns them: uint64 bits in int64, so possibly
# negative, and offsets in steps of 4.
RESERVATIONS = [(0, 0, 0), (67280421310721, 4, 0), (-1, 2**40, 8), (-(2**63), -4, 4), (2**63 - 1, 12, 2**32)]


@pytest.mark.parametrize("philox_seed, offset, intragraph", RESERVATIONS)
def test_device_derivation_matches_the_host_one(philox_seed, offset, intragraph):
    as_tensor = lambda v: torch.tensor([v], dtype=torch.int64, device=TRITON_DEVICE)  # noqa: E731
    seed = reservation_seed(as_tensor(philox_seed), as_tensor(offset), intragraph)
    want = seed_from_reservation(philox_seed, (offset + intragraph) % 2**64)
    assert 0 <= want < 2**63 and seed.item() == want


def _seed_and_tau_forms(seed: int, tau: float, dtype: torch.dtype):
    by_pointer = (torch.tensor(seed), torch.tensor(tau, dtype=torch.float64))
    by_pointer = tuple(t.to(TRITON_DEVICE) for t in by_pointer)
    return [(seed, tau), by_pointer] if dtype != torch.float64 else [(seed, by_pointer[1]), by_pointer]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 48, 2**40 + 3, 2**63 - 2])  # 1 and multiples of 16: Triton's special ints
def test_kernels_take_seed_and_temperature_by_value_or_pointer(seed, dtype):
    x = torch.randn(5, 37, 3, device=TRITON_DEVICE).to(dtype)
    grad = torch.randn(5, 37, 3, device=TRITON_DEVICE).to(dtype)
    outputs = []
    for s, t in _seed_and_tau_forms(seed, 0.6, dtype):
        outputs.append((
            gumbel_softmax.gumbel_softmax_fwd(x, s, t, False),
            gumbel_softmax.gumbel_softmax_fwd(x, s, t, True),
            gumbel_softmax.gumbel_softmax_bwd(grad, x, s, t, True),
            gumbel_max.gumbel_max(x, s, t),
            gumbel_topk.gumbel_topk(x, s, t, 3),
        ))  # fmt: skip
    for by_value, by_pointer in zip(*outputs, strict=True):
        assert torch.equal(by_value, by_pointer)
