"""The Triton backend: its own randomness against the golden values, and its launch heuristics.

Without a GPU these run the kernels in Triton's interpreter on CPU tensors (see conftest.py).
"""

from __future__ import annotations

import pytest
import torch

from gumbel_fused import _triton
from gumbel_fused.reference import philox_words_ref, uniform_from_words_ref

from .conftest import TRITON_DEVICE
from .helpers import run_fwd


def test_kernel_uniforms_match_golden(rng_golden):
    for case in rng_golden["cases"]:
        rows = torch.tensor([r["row"] for r in case["rows"]], dtype=torch.int64, device=TRITON_DEVICE)
        seed = torch.tensor(case["seed"], dtype=torch.int64, device=TRITON_DEVICE)
        u = _triton.contract_uniforms(seed, rows, case["K"]).cpu()
        for i, row in enumerate(case["rows"]):
            assert torch.equal(u[i], torch.tensor(row["u"], dtype=torch.float32)), (case["seed"], row["row"])


@pytest.mark.parametrize("n_cols", [1, 3, 4097, 9000])
def test_kernel_uniforms_match_reference(n_cols):
    # Beyond the golden rows: multi-chunk rows, a ragged last group, and a 64-bit row index.
    rows = torch.tensor([0, 5, 2**33 + 7], dtype=torch.int64)
    seed = 0x1234_5678_9ABC_DEF0
    want = uniform_from_words_ref(philox_words_ref(seed, rows, n_cols))
    got = _triton.contract_uniforms(torch.tensor(seed, device=TRITON_DEVICE), rows.to(TRITON_DEVICE), n_cols)
    assert torch.equal(got.cpu(), want)


@pytest.mark.parametrize(
    "shape, single_pass, block_r",
    [
        ((200000, 10, 1), True, 256),  # tiny rows: many rows a program
        ((4096, 1024, 1), True, 4),
        ((64, 131072, 1), False, 1),  # longer than a block: online max/sum, two passes
        ((8, 8192, 1024), False, 32),  # dVAE layout: tall tiles, chunked K
        ((1, 5, 1), True, 1),  # never more rows a tile than there are rows
    ],
)
def test_launch_config_branches(shape, single_pass, block_r):
    outer, n_cols, inner = shape
    config = _triton.launch_config(outer * inner, n_cols, inner)
    assert config["SINGLE_PASS"] is single_pass
    assert config["BLOCK_R"] == block_r
    assert config["BLOCK_K"] % 4 == 0  # chunks hold whole Philox groups
    assert config["BLOCK_R"] * config["BLOCK_K"] <= _triton.MAX_SINGLE_BLOCK


def test_noise_does_not_depend_on_tiling(monkeypatch):
    # The same logits through the single-pass and the multi-pass kernel: the contract fixes the
    # noise per element, so only the softmax summation order may differ.
    x = torch.randn(3, 600, 1)
    single = run_fwd("triton", x, 5, 0.5, hard=True)
    monkeypatch.setattr(_triton, "MAX_SINGLE_BLOCK", 128)
    monkeypatch.setattr(_triton, "MULTI_BLOCK_K", 128)
    assert not _triton.launch_config(3, 600, 1)["SINGLE_PASS"]
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
        kernels = (_triton._gumbel_softmax_fwd_kernel, _triton._gumbel_softmax_bwd_kernel)
        # device_caches[device][0] is Triton's dict of compiled binaries, one per specialization.
        return [len(cache[0]) for k in kernels for cache in k.device_caches.values()]

    before = compiled_variants()
    for tau in (0.9, 0.73, 0.5):
        gumbel_softmax(x, tau, hard=True).sum().backward()
    assert compiled_variants() == before
