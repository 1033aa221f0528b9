"""The Triton gumbel_softmax kernels: tiling independence and compile caching.

Without a GPU these run the kernels in Triton's interpreter on CPU tensors (see tests/conftest.py).
"""

from __future__ import annotations

import pytest
import torch

from gumbel_fused._triton import gumbel_softmax as kernels
from gumbel_fused._triton import tiles

from ..helpers import run_fwd


def test_noise_does_not_depend_on_tiling(monkeypatch):
    # The same logits through the single-pass and the multi-pass kernel: the contract fixes the
    # noise per element, so only the softmax summation order may differ.
    x = torch.randn(3, 600, 1)
    single = run_fwd("triton", x, 5, 0.5, hard=True)
    monkeypatch.setattr(tiles, "MAX_SINGLE_BLOCK", 128)
    monkeypatch.setattr(tiles, "MULTI_BLOCK_K", 128)
    assert not tiles.launch_config(3, 600, 1)["SINGLE_PASS"]
    multi = run_fwd("triton", x, 5, 0.5, hard=True)
    assert torch.equal(single, multi)
    soft_multi = run_fwd("triton", x, 5, 0.5, hard=False)
    monkeypatch.undo()
    torch.testing.assert_close(run_fwd("triton", x, 5, 0.5, hard=False), soft_multi)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compilation caching needs a real GPU")
def test_new_tau_and_seed_do_not_recompile():
    from gumbel_fused import gumbel_softmax

    x = torch.randn(64, 1000, device="cuda", requires_grad=True)
    gumbel_softmax(x, 1.0, hard=True).sum().backward()

    def compiled_variants():
        jitted = (kernels._gumbel_softmax_fwd_kernel, kernels._gumbel_softmax_bwd_kernel)
        # device_caches[device][0] is Triton's dict of compiled binaries, one per specialization.
        return [len(cache[0]) for k in jitted for cache in k.device_caches.values()]

    before = compiled_variants()
    for tau in (0.9, 0.73, 0.5):
        gumbel_softmax(x, tau, hard=True).sum().backward()
    assert compiled_variants() == before
