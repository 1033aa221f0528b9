"""Compiling Triton kernels for a real GPU (sm_90) without one, for the compile tests.

The interpreter accepts code that the compiler rejects (e.g. a non-constexpr global), so the tests compile each
launch branch to a cubin with Triton's own ptxas, in a subprocess without TRITON_INTERPRET, and read its
register spills (stack bytes) with cuobjdump.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

# Defines, for the script after it: MATH (math dtypes by input dtype name) and stack_bytes(kernel, pointers,
# constexprs, num_warps), the stack bytes of the kernel's cubin (None when it spills nothing). `pointers` maps the
# pointer arguments (and the scalar seed and temperature) to their types; the other runtime arguments are i32.
# argument_forms(dtype, temperature) gives the seed and temperature types of each way the ops launch a kernel.
_PRELUDE = textwrap.dedent(
    """
    import json, re, subprocess, sys, tempfile, os
    import triton, triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    MATH = {"fp32": tl.float32, "bf16": tl.float32, "fp64": tl.float64}

    def stack_bytes(kernel, pointers, constexprs, num_warps):
        params = zip(kernel.arg_names, kernel.params)
        signature = {name: ("constexpr" if p.is_constexpr else "i32") for name, p in params}
        signature.update(pointers)
        src = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
        compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(compiled.asm["cubin"]); f.flush()
            usage = subprocess.run([CUOBJDUMP, "-res-usage", f.name], capture_output=True, text=True).stdout
        spills = re.search(r"STACK:(\\d+)", usage)
        return int(spills.group(1)) if spills else None

    def argument_forms(dtype, temperature):
        # The seed and temperature as the ops launch the kernels: by value on eager CUDA calls (tau by
        # pointer for fp64 math, which a Triton float argument would round to fp32), by pointer in
        # compiled graphs and CUDA graph captures.
        by_value = {"seed": "i64", temperature: "*fp64" if dtype == "fp64" else "fp32"}
        return {"value": by_value, "pointer": {"seed": "*i64", temperature: "*fp64"}}
    """
)


def assert_compiles_without_spills(script: str, case, allowed: dict[str, int] | None = None) -> None:
    """Run ``script`` after the prelude with ``json.dumps(case)`` as argv[1]; it prints a JSON object of
    ``{kernel variant: stack bytes}`` last, and every variant must compile and spill nothing, except that a
    variant whose name contains a key of ``allowed`` may spill up to that many bytes."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(script), json.dumps(case)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    stack = json.loads(proc.stdout.strip().splitlines()[-1])
    allowed = allowed or {}
    spilling = {
        name: nbytes for name, nbytes in stack.items()
        if nbytes and nbytes > max((limit for key, limit in allowed.items() if key in name), default=0)
    }  # fmt: skip
    assert not spilling, f"kernels spill registers to the stack (bytes): {spilling}"
