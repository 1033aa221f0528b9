"""Layer 2, the op boundary: one module per op defines its ``torch.library`` custom ops (schema, fake
implementation, autograd); ``_dispatch`` gives every op its kernels.

``torch.library.custom_op`` costs a few milliseconds at import, where ``triton_op`` would import
inductor and dynamo (about a second): the Triton launchers are plain CUDA kernels of these ops, imported
on the first CUDA call, and stay opaque (and so capturable and traceable) under torch.compile.
"""
