"""Smoke test of an installed wheel: run by .ci/run with the wheel's venv, from outside the checkout.

It runs itself twice in fresh interpreters that share one empty kernel cache. The first builds the C++ CPU
kernels from the sources the wheel ships and says so on stderr, once; the second loads that build and says
nothing. Each checks that the package comes from the venv, not the checkout, that the C++ backend is the
one in use, with no warning, and that samples through the public API equal the reference's for the seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
BUILD_LINE = "gumbel_fused: building the C++ CPU kernels"


def check() -> None:
    import torch  # noqa: PLC0415 (the parent process never imports torch)

    import gumbel_fused  # noqa: PLC0415
    from gumbel_fused import _cpu, draw_seed, gumbel_softmax  # noqa: PLC0415
    from gumbel_fused.reference import gumbel_softmax_fwd_ref  # noqa: PLC0415

    location = Path(gumbel_fused.__file__).resolve()
    assert CHECKOUT not in location.parents, f"imported from the checkout: {location}"
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        kernels = _cpu.load_cpu_kernels()
        load_s = time.perf_counter() - start
        for hard in (False, True):
            y = gumbel_softmax(logits, tau=0.5, hard=hard, generator=torch.Generator().manual_seed(1))
            seed = draw_seed(logits.device, torch.Generator().manual_seed(1))  # the seed that call drew
            ref = gumbel_softmax_fwd_ref(logits.unsqueeze(-1), seed, 0.5, hard).squeeze(-1)
            if hard:
                assert torch.equal(y, ref), "hard sample differs from the reference"
            else:
                torch.testing.assert_close(y, ref, atol=2e-6, rtol=2e-5)
    assert not caught, [str(w.message) for w in caught]
    assert kernels is not None and kernels.__name__ == _cpu.extension_name(_cpu.cpu_variant()), kernels
    assert _cpu.source_dir() == location.parent / "_csrc", _cpu.source_dir()
    print(f"{kernels.__name__} from {location.parent}: loaded in {load_s:.1f} s; samples equal the reference")


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCH_EXTENSIONS_DIR": cache}
        for run, builds in (("first run", 1), ("cached run", 0)):
            result = subprocess.run(
                [sys.executable, __file__, "--check"], env=env, cwd=cache, capture_output=True, text=True
            )
            sys.stderr.write(result.stderr)
            assert result.returncode == 0, f"{run} failed:\n{result.stdout}"
            assert result.stderr.count(BUILD_LINE) == builds, f"{run}: {builds} build line(s) expected"
            print(f"wheel smoke test, {run}: {result.stdout.strip()}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        check()
    else:
        main()
