"""Start-up: importing the package and a first eager CPU call load neither dynamo nor inductor.

Those two cost about 2 s of import (torch 2.14, 2-core machine); the ops must stay usable, and
torch.compile must still trace them, without paying that in every process that samples.
"""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
import torch
import gumbel_fused
x = torch.randn(6, 5, requires_grad=True)
gumbel_fused.gumbel_softmax(x, 0.5, hard=True).sum().backward()
heavy = sorted(m for m in ("torch._dynamo", "torch._inductor.compile_fx", "triton") if m in sys.modules)
print(json.dumps(heavy))
"""


def test_import_and_first_cpu_call_load_no_compiler_stack():
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
