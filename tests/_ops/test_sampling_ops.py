"""The op boundary of ``gumbel_max`` and ``gumbel_topk``: opcheck, torch.compile, fakes, no autograd."""

from __future__ import annotations

import torch

import gumbel_fused._ops.gumbel_max  # noqa: F401  (registers torch.ops.gumbel_fused.gumbel_max)
import gumbel_fused._ops.gumbel_topk  # noqa: F401
from gumbel_fused import gumbel_max, gumbel_topk

from ..helpers import as_tensors

OPS = torch.ops.gumbel_fused


def _samples():
    seed, temperature = as_tensors(7, 0.6, "cpu")
    for shape in [(4, 10, 1), (2, 5, 3), (1, 1, 1), (2, 1500, 1)]:
        for requires_grad in (False, True):
            yield torch.randn(shape, requires_grad=requires_grad), seed, temperature


def test_opcheck_gumbel_max():
    for args in _samples():
        torch.library.opcheck(OPS.gumbel_max.default, args)


def test_opcheck_gumbel_topk():
    for logits, seed, temperature in _samples():
        for k in {1, logits.shape[1]}:
            torch.library.opcheck(OPS.gumbel_topk.default, (logits, seed, temperature, k))


def test_compile_fullgraph_matches_eager():
    x = torch.randn(8, 3, 1200)
    draw_max = torch.compile(gumbel_max, fullgraph=True)
    draw_topk = torch.compile(gumbel_topk, fullgraph=True)
    for temperature in (1.0, 0.5):
        torch.manual_seed(9)
        want_max, want_topk = gumbel_max(x, 1, temperature=temperature), gumbel_topk(x, 4, temperature=temperature)
        torch.manual_seed(9)
        got_max, got_topk = draw_max(x, 1, temperature=temperature), draw_topk(x, 4, temperature=temperature)
        assert torch.equal(got_max, want_max) and torch.equal(got_topk, want_topk)


def test_compile_inside_a_model_with_grad():
    # Sampling tokens from a layer's output: the indices are a leaf of the graph, the layer still trains.
    layer = torch.nn.Linear(16, 50)

    def step(h):
        logits = layer(h)
        tokens = gumbel_topk(logits, 2, temperature=0.8)
        return logits.log_softmax(-1).gather(-1, tokens).sum()

    h = torch.randn(4, 16)
    torch.manual_seed(2)
    want = step(h)
    torch.manual_seed(2)
    got = torch.compile(step, fullgraph=True)(h)
    torch.testing.assert_close(got, want)
    got.backward()
    assert layer.weight.grad is not None
