"""The one thing pyproject.toml cannot say: ship the top-level csrc/ inside the package.

The C++ sources stay at the repository's top level (csrc/); a wheel carries them as the data directory
gumbel_fused/_csrc, where gumbel_fused/_cpu.py finds them with importlib.resources and compiles them on
first use. setuptools copies a folder from elsewhere into a package only as a package of its own, mapped
with package_dir. pyproject.toml can map one too, but then must list every package by hand: its automatic
discovery finds only the folders under the package. Everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    # Namespace discovery, as pyproject.toml's own: data folders such as gumbel_fused/vae/data are packages too.
    packages=[*find_namespace_packages(include=["gumbel_fused*"], exclude=["*__pycache__"]), "gumbel_fused._csrc"],
    package_dir={"gumbel_fused._csrc": "csrc"},
)
