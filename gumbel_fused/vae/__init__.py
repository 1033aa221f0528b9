"""The reference categorical VAE of Jang et al. (2017), an application of the library.

``model`` (the VAE), ``data`` (MNIST, the packaged mnist-5k, Fashion-MNIST), ``checkpoint``
(atomic writes, resumable RNG state), ``cli`` (the options of ``gumbel-vae``) and ``train`` (its
training run and entry point). Only the model is imported here: it needs torch alone, while data and
training need the ``vae`` extra (``pip install "gumbel-fused[vae]"``).
"""

from .model import CategoricalVAE

__all__ = ["CategoricalVAE"]
