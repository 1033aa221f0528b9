"""Layer 2, the op boundary: one module per op defines its ``torch.library`` ops (schema, fake, batching
rule) and, for a differentiable op, its autograd rules; ``_dispatch`` gives every op its kernels and the
direct eager call, ``_autograd`` the ways a differentiable call reaches its rules.

Ops are defined with ``torch.library.Library`` (not ``custom_op``/``triton_op``, whose wrappers import
dynamo or inductor): the Triton launchers are plain CUDA kernels of these ops, imported on the first CUDA
call, and stay opaque (and so capturable and traceable) under torch.compile.
"""
