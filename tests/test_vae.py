"""The reference categorical VAE, its annealing schedule and its datasets."""

from __future__ import annotations

import gzip
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gumbel_fused import data as datasets
from gumbel_fused.train import temperature
from gumbel_fused.vae import CategoricalVAE, resolve_gumbel_softmax

from .conftest import DATA as SHARED


def tiny_vae(**kwargs) -> CategoricalVAE:
    torch.manual_seed(0)
    return CategoricalVAE(n_latents=2, n_categories=3, hidden=(16,), x_dim=12, **kwargs).double()


def binary_batch(n: int, x_dim: int = 12) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, x_dim), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(1))


def test_default_architecture_is_the_articles():
    model = CategoricalVAE()
    assert [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)] == [512, 256, 200]
    assert [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)] == [256, 512, 784]
    # No activation after the last encoder layer: the logits may be negative.
    assert isinstance(model.encoder[-1], torch.nn.Linear)
    x = torch.rand(5, 784).round()
    assert model.encode(x).shape == (5, 20, 10)
    assert model.encode(x).min() < 0


def test_kl_is_analytic_and_zero_for_the_uniform_posterior():
    model = tiny_vae()
    logits = torch.randn(4, 2, 3, dtype=torch.float64)
    q = torch.distributions.Categorical(logits=logits)
    prior = torch.distributions.Categorical(logits=torch.zeros(3, dtype=torch.float64))
    expected = torch.distributions.kl_divergence(q, prior).sum(-1)
    torch.testing.assert_close(model.kl_to_prior(logits), expected)
    assert model.kl_to_prior(torch.zeros(4, 2, 3, dtype=torch.float64)).abs().max() < 1e-12


@pytest.mark.parametrize("impl", ["fused", "eager"])
def test_loss_parts_and_gradients(impl):
    model = tiny_vae(gumbel_softmax=resolve_gumbel_softmax(impl))
    x = binary_batch(6)
    parts = model(x, tau=0.7)
    assert all(p.shape == (6,) for p in parts)
    torch.testing.assert_close(parts.elbo, parts.log_likelihood - parts.kl)
    assert (parts.log_likelihood <= 0).all() and (parts.kl >= 0).all()
    model.loss(x, tau=0.7, hard=True).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_sampler_is_injectable_and_gets_a_python_float_tau():
    calls = []

    def recording(logits, tau, hard):
        calls.append((type(tau), tau, hard))
        return F.gumbel_softmax(logits, tau, hard)

    tiny_vae(gumbel_softmax=recording).loss(binary_batch(3), tau=0.6, hard=True)
    assert calls == [(float, 0.6, True)]
    with pytest.raises(ValueError, match="unknown"):
        resolve_gumbel_softmax("numba")


def exact_log_marginal(model: CategoricalVAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x) by enumerating all K ** N latent configurations of a tiny model."""
    n, k = model.n_latents, model.n_categories
    configs = torch.tensor(list(itertools.product(range(k), repeat=n)))
    z = F.one_hot(configs, k).double()
    x_logits = model.decode(z)  # (K**N, x_dim)
    log_lik = -F.binary_cross_entropy_with_logits(
        x_logits.unsqueeze(1).expand(-1, len(x), -1), x.expand(len(configs), -1, -1), reduction="none"
    ).sum(-1)
    return torch.logsumexp(log_lik - n * math.log(k), dim=0)


def test_importance_weighted_estimate_brackets_and_converges():
    model = tiny_vae()
    x = binary_batch(8)
    with torch.no_grad():
        exact = exact_log_marginal(model, x)
    generator = torch.Generator().manual_seed(0)
    elbo = torch.stack([model.elbo_discrete(x, generator).elbo for _ in range(2000)]).mean(0)
    iw = torch.stack([model.log_marginal_iw(x, 1000, generator) for _ in range(5)]).mean(0)
    assert (elbo <= exact + 0.05).all()  # the ELBO is a lower bound (up to Monte Carlo error)
    assert (iw <= exact + 0.01).all()
    torch.testing.assert_close(iw, exact, atol=0.02, rtol=0)  # k = 1000 over 9 configurations: tight
    assert (iw >= elbo - 0.05).all()


def test_reconstruct_and_sample_are_probabilities():
    model = tiny_vae()
    x = binary_batch(4)
    recon = model.reconstruct(x)
    assert recon.shape == (4, 12) and (recon >= 0).all() and (recon <= 1).all()
    torch.testing.assert_close(recon, model.reconstruct(x))  # decodes the mode: deterministic
    samples = model.sample(5, torch.Generator().manual_seed(0))
    assert samples.shape == (5, 12) and (samples >= 0).all() and (samples <= 1).all()
    torch.testing.assert_close(samples, model.sample(5, torch.Generator().manual_seed(0)))


def test_temperature_schedule():
    kwargs = dict(tau0=1.0, tau_min=0.5, rate=1e-4, every=500)
    assert temperature(0, **kwargs) == temperature(499, **kwargs) == 1.0
    assert temperature(500, **kwargs) == pytest.approx(math.exp(-0.05))
    # A pure function of the step (no compounding): step 1000 is exp(-r * 1000), not exp(-r * 500) ** 3.
    assert temperature(1000, **kwargs) == pytest.approx(math.exp(-0.1))
    assert temperature(10**6, **kwargs) == 0.5
    taus = [temperature(s, **kwargs) for s in range(0, 20000, 100)]
    assert taus == sorted(taus, reverse=True)


def test_binarize_is_reproducible():
    images = torch.randint(0, 256, (10, 784), dtype=torch.uint8)
    first = datasets.binarize(images, torch.Generator().manual_seed(3))
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(first, datasets.binarize(images, torch.Generator().manual_seed(3)))
    assert datasets.binarize(torch.full((1, 784), 255, dtype=torch.uint8), torch.Generator()).min() == 1


def test_mnist_5k_split():
    split = datasets.load("mnist-5k")
    assert split.train_images.shape == (4500, 784) and split.test_images.shape == (500, 784)
    assert split.train_images.dtype == torch.uint8
    assert torch.bincount(torch.cat([split.train_labels, split.test_labels])).tolist() == [500] * 10
    again = datasets.load("mnist-5k")
    assert torch.equal(split.test_images, again.test_images)  # the split is fixed
    limited = split.limit(100, 20)
    assert len(limited.train_images) == 100 and len(limited.test_images) == 20


def test_packaged_mnist_5k_matches_the_csv():
    csv = SHARED / "data" / "mnist_5k.csv.gz"
    if not csv.exists():
        pytest.skip(f"{csv} not present")
    table = np.loadtxt(gzip.open(csv), delimiter=",", dtype=np.int64)
    with np.load(datasets.MNIST_5K_PATH) as archive:
        assert np.array_equal(archive["images"].reshape(-1, 784), table[:, :784])
        assert np.array_equal(archive["labels"], table[:, 784])


def write_idx(path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def test_idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 7), ("t10k", 3)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), 2051)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)), 2049)
    split = datasets.load("fashion-mnist", tmp_path)
    assert split.train_images.shape == (7, 784) and split.test_labels.shape == (3,)


def test_missing_dataset_names_the_path(tmp_path):
    with pytest.raises(datasets.DatasetNotFound, match=f"{tmp_path}.*mnist-5k"):
        datasets.load("fashion-mnist", tmp_path)


def test_debian_fashion_mnist():
    folder = datasets.DEFAULT_DATA_DIRS["fashion-mnist"]
    try:
        split = datasets.load("fashion-mnist")
    except datasets.DatasetNotFound:
        pytest.skip(f"Fashion-MNIST not installed in {folder} (apt-get install dataset-fashion-mnist)")
    assert split.train_images.shape == (60000, 784) and split.test_images.shape == (10000, 784)
