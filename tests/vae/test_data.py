"""The VAE's datasets: binarization, the packaged mnist-5k, IDX folders."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
import torch

from gumbel_fused.vae import data as datasets

# sha256 of the uncompressed mnist_5k.csv that data/mnist_5k.npz was converted from (see data/README.md).
MNIST_5K_CSV_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"


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


def test_packaged_mnist_5k_is_the_csv_it_was_converted_from():
    """Written back as the source CSV's text, the archive hashes to that CSV's uncompressed sha256
    (data/README.md), so it is the source digit for digit and label for label."""
    with np.load(datasets.MNIST_5K_PATH) as archive:
        rows = np.concatenate([archive["images"].reshape(-1, 784), archive["labels"][:, None]], axis=1)
    text = "".join(",".join(map(str, row)) + "\n" for row in rows.tolist())
    assert hashlib.sha256(text.encode()).hexdigest() == MNIST_5K_CSV_SHA256


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
