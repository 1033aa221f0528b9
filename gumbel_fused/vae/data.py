"""Datasets for the reference VAE: MNIST, the packaged 5,000-digit MNIST subset, Fashion-MNIST.

Every loader returns a :class:`Split` of uint8 images flattened to ``(N, 784)`` for training and a
held-out test set. Pixels are binarized on the fly by :func:`binarize` with an explicit generator,
so that the stream of binary images is reproducible and resumable.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATASETS = ("mnist", "mnist-5k", "fashion-mnist")
PIXELS = 28 * 28
# Where each dataset is looked for when --data-dir is not given.
DEFAULT_DATA_DIRS = {
    "mnist": "data",  # torchvision layout: data/MNIST/raw/*-ubyte
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",  # Debian's dataset-fashion-mnist
}
MNIST_5K_PATH = Path(__file__).with_name("data") / "mnist_5k.npz"
# mnist-5k has no official test set: a fixed permutation (independent of --seed) holds out 500 digits.
MNIST_5K_TEST = 500
MNIST_5K_SPLIT_SEED = 0


class DatasetNotFound(Exception):
    """A dataset's files are not where they were looked for; the message names the path."""


@dataclass
class Split:
    """Train and test images, uint8 of shape ``(N, 784)``, with their labels ``(N,)``."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def limit(self, train: int | None, test: int | None) -> Split:
        """The first ``train`` / ``test`` examples of each part (``None`` keeps all)."""
        return Split(
            self.train_images[:train], self.train_labels[:train], self.test_images[:test], self.test_labels[:test]
        )


def binarize(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Dynamic binarization: each pixel is 1 with probability grey / 255, drawn from ``generator``.

    Args:
        images: uint8 ``(B, 784)``.
    Returns:
        float32 ``(B, 784)`` of 0.0 and 1.0.
    """
    probs = images.to(torch.float32) / 255.0
    return torch.bernoulli(probs, generator=generator)


def mnist_available(data_dir: str | os.PathLike) -> bool:
    """Whether torchvision's MNIST files are already under ``data_dir`` (no download needed)."""
    raw = Path(data_dir) / "MNIST" / "raw"
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return all((raw / name).exists() or (raw / f"{name}.gz").exists() for name in names)


def load(name: str, data_dir: str | os.PathLike | None = None) -> Split:
    """Load dataset ``name`` (one of :data:`DATASETS`); raise :class:`DatasetNotFound` if absent."""
    if name == "mnist-5k":
        return load_mnist_5k()
    data_dir = Path(data_dir if data_dir is not None else DEFAULT_DATA_DIRS[name]).expanduser()
    if name == "mnist":
        return load_mnist(data_dir)
    if name == "fashion-mnist":
        return load_idx_dir(data_dir, "Fashion-MNIST")
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def load_mnist_5k() -> Split:
    """The packaged 5,000 MNIST digits (see data/README.md), split 4,500 train / 500 test."""
    with np.load(MNIST_5K_PATH) as archive:
        images = torch.from_numpy(archive["images"].reshape(-1, PIXELS))
        labels = torch.from_numpy(archive["labels"].astype(np.int64))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(MNIST_5K_SPLIT_SEED))
    train, test = order[:-MNIST_5K_TEST], order[-MNIST_5K_TEST:]
    return Split(images[train], labels[train], images[test], labels[test])


def load_mnist(data_dir: Path) -> Split:
    """torchvision's MNIST under ``data_dir``, downloaded there if missing (needs internet)."""
    from torchvision.datasets import MNIST

    download = not mnist_available(data_dir)
    try:
        train = MNIST(str(data_dir), train=True, download=download)
        test = MNIST(str(data_dir), train=False, download=download)
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError... when offline
        raise DatasetNotFound(
            f"MNIST not found in {data_dir / 'MNIST' / 'raw'} and could not be downloaded "
            f"({type(error).__name__}); use --dataset mnist-5k to train offline on the packaged digits"
        ) from None
    return Split(train.data.reshape(-1, PIXELS), train.targets, test.data.reshape(-1, PIXELS), test.targets)


def load_idx_dir(data_dir: Path, title: str) -> Split:
    """The four MNIST-format IDX files (``train``/``t10k``, optionally gzipped) in ``data_dir``."""
    parts = []
    for prefix in ("train", "t10k"):
        for kind, magic in (("images-idx3", 2051), ("labels-idx1", 2049)):
            name = f"{prefix}-{kind}-ubyte"
            path = next((p for p in (data_dir / f"{name}.gz", data_dir / name) if p.exists()), None)
            if path is None:
                raise DatasetNotFound(
                    f"{title} not found: no {name}[.gz] in {data_dir} (install Debian's dataset-fashion-mnist "
                    f"or pass --data-dir); use --dataset mnist-5k to train on the packaged digits"
                )
            parts.append(read_idx(path, magic))
    train_images, train_labels, test_images, test_labels = parts
    return Split(
        train_images.reshape(-1, PIXELS), train_labels.long(), test_images.reshape(-1, PIXELS), test_labels.long()
    )


def read_idx(path: Path, magic: int) -> torch.Tensor:
    """A uint8 IDX file (LeCun's MNIST format): big-endian magic, dimension sizes, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        raw = file.read()
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DatasetNotFound(f"{path} is not an IDX file of the expected kind (magic {found}, expected {magic})")
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return torch.from_numpy(data.reshape(shape).copy())
