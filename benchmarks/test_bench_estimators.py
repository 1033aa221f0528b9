"""Gradient estimators: each fused estimator against its authors' eager form, forward + backward.

The eager forms are ``gumbel_fused.reference.published`` (ReinMax as microsoft/ReinMax writes it, with
``torch.multinomial`` and its autograd.Function; Gumbel-Rao as nshepperd/gumbel-rao-pytorch and
chijames/GST compute it, an (R, ..., K) tensor of conditional noise; GST as chijames/GST's
``gst_mover``; straight-through as torch's ``OneHotCategoricalStraightThrough``). Fused ST-GS
(``estimator="st"``) is timed beside them: the report gives each fused estimator's cost relative to it.
One group per (device, shape, estimator); fp32, hard samples, the gradient of ``sum(sample * weight)``.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from _common import Shape, bytes_moved, describe_benchmark, devices, make_logits, record_throughput, run_timed

from gumbel_fused import gumbel_softmax
from gumbel_fused.reference import published

RAO_SAMPLES = 10  # the target is at R = 10, the API's default
TAU = 1.0  # ReinMax's authors require tau >= 1; the other estimators take any
ESTIMATOR_SHAPES = {
    "vae": Shape((100, 20, 10), (100, 20, 10), (100, 20, 10)),  # Jang et al.'s 20 x 10 VAE, batch 100
    "wide": Shape((64, 32, 512), (1024, 32, 512), (8, 32, 512)),  # 512 categories a latent
}
EAGER = {
    "reinmax": published.reinmax_eager,
    "gumbel_rao": functools.partial(published.gumbel_rao_eager, rao_samples=RAO_SAMPLES),
    "gst": published.gst_eager,
    "plain_st": published.plain_st_eager,
}
# "fused-st" is fused ST-GS, the cost the other fused estimators are compared with.
IMPLS = ("eager", "fused", "fused-st")


def _sampler(impl: str, estimator: str):
    if impl == "eager":
        return lambda x: EAGER[estimator](x, TAU)
    chosen = "st" if impl == "fused-st" else estimator
    return lambda x: gumbel_softmax(x, TAU, hard=True, estimator=chosen, rao_samples=RAO_SAMPLES)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("estimator", list(EAGER))
@pytest.mark.parametrize("shape_name", ESTIMATOR_SHAPES)
@pytest.mark.parametrize("device", devices())
def test_estimator(benchmark, bench_config, device, shape_name, estimator, impl):
    spec = ESTIMATOR_SHAPES[shape_name]
    shape = spec.quick if bench_config.quick else getattr(spec, device)
    x = make_logits(shape, torch.float32, device, requires_grad=True)
    weight = make_logits(shape, torch.float32, device, seed=1)
    sample = _sampler(impl, estimator)

    def forward_backward():
        return torch.autograd.grad((sample(x) * weight).sum(), x)

    describe_benchmark(
        benchmark,
        suite="estimators",
        group=f"{device} {shape_name} {tuple(shape)} {estimator}",
        impl=impl,
        device=device,
        shape_name=shape_name,
        shape=shape,
        dim=-1,
        dtype_name="fp32",
        direction="fwd+bwd",
        mode="hard",
    )
    benchmark.extra_info.update(estimator=estimator, estimator_impl=impl)  # the report's column
    numel = math.prod(shape)
    median = run_timed(benchmark, forward_backward, device, bench_config.budget(device))
    record_throughput(benchmark, median, numel, bytes_moved(numel, torch.float32, "fwd+bwd"))
