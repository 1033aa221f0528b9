"""Training step: one Adam step (forward, backward, update) of the reference categorical VAE.

The model is ``gumbel_fused.vae.CategoricalVAE`` at the article's size (20 latents x 10 categories,
784-512-256 MLPs, batch 100, Jang et al. 2017), with its Gumbel-softmax injected: eager, torch.compile
of it, the fused op, and a plain ``softmax(logits / tau)`` with no noise at all as the floor that no
sampler can beat. The gap between an implementation and the floor is what sampling costs per step.
"""

from __future__ import annotations

import pytest
import torch
from _common import IMPLS, MODES, devices, impl_label, run_timed, sampler

from gumbel_fused.vae import CategoricalVAE

BATCH, N_LATENTS, N_CATEGORIES, X_DIM = 100, 20, 10, 784
FLOOR = "softmax-floor"


def softmax_floor(logits: torch.Tensor, tau: float = 1.0, hard: bool = False, *args, **kwargs) -> torch.Tensor:
    """No noise, no sampling: ``softmax(logits / tau)``, whatever ``hard`` says (the floor)."""
    return torch.softmax(logits / tau, dim=-1)


@pytest.mark.parametrize("impl", [*IMPLS, FLOOR])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("device", devices())
def test_train_step(benchmark, bench_config, device, mode, impl):
    hard = MODES[mode]
    shape = (BATCH, N_LATENTS, N_CATEGORIES)  # the logits the sampler sees
    fn = softmax_floor if impl == FLOOR else sampler(impl, device, shape, torch.float32, hard)
    torch.manual_seed(0)
    model = CategoricalVAE(N_LATENTS, N_CATEGORIES, x_dim=X_DIM, gumbel_softmax=fn).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(BATCH, X_DIM, generator=torch.Generator().manual_seed(0)).round().to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(x, tau=1.0, hard=hard)
        loss.backward()
        optimizer.step()

    benchmark.group = f"train-step {device} VAE {N_LATENTS}x{N_CATEGORIES} batch {BATCH} {mode}"
    benchmark.name = FLOOR if impl == FLOOR else impl_label(impl, device)
    benchmark.extra_info.update(
        suite="train_step",
        impl=benchmark.name,
        device=device,
        shape_name="vae",
        shape=list(shape),
        dtype="fp32",
        direction="train-step",
        mode=mode,
        batch=BATCH,
    )
    median = run_timed(benchmark, step, device, bench_config.budget(device))
    if median:
        benchmark.extra_info["steps_per_s"] = 1.0 / median
