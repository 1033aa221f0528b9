"""Triton backend (CUDA): one module of kernels and launchers per op, on shared RNG and tile helpers.

Imported lazily, on the first CUDA call, so that ``import gumbel_fused`` stays cheap.
"""
