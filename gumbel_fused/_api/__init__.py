"""Layer 1, the public functions: one module per op (validation, ``dim``, seed), on shared ``_args`` checks.

Users import them from ``gumbel_fused`` or ``gumbel_fused.functional``.
"""
