"""The C++ CPU backend: built on first use, cached on disk, picked by instruction set at run time.

``load_cpu_kernels()`` returns the extension module (``fwd``, ``bwd``, and debug entry points), or
``None`` after one warning when it cannot be built, in which case callers use the reference.

How it builds and loads:

* The sources in ``csrc/`` are JIT-compiled with :func:`torch.utils.cpp_extension.load` into
  ``$TORCH_EXTENSIONS_DIR`` (torch's default cache when unset). The install stays pure Python.
* One variant per instruction set, each a separately named extension: ``DEFAULT`` (baseline x86-64
  or the host's baseline elsewhere), ``AVX2`` and ``AVX512``, compiled with the flags and the
  ``CPU_CAPABILITY*`` macros that ATen's own per-ISA kernels use, so ``at::vec::Vectorized`` has
  8 (DEFAULT, AVX2) or 16 (AVX512) fp32 lanes. The variant is chosen by
  ``torch.backends.cpu.get_cpu_capability()`` (which honours ``ATEN_CPU_CAPABILITY``), so a cache
  shared between machines never runs an instruction the CPU lacks; only the chosen one is built.
  No ``-march=native``, no ``-ffast-math``.
* The extension name carries a digest of every file in ``csrc/``, the flags and the torch and Python
  versions. A cached build is therefore never stale, and when its library exists it is imported
  directly (tens of ms), with no compiler or ninja run. That check happens under the build
  directory's lock, the one ``cpp_extension.load`` holds while it builds, so concurrent processes
  wait for one build and then load it, and a half-written library is never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
import threading
import warnings
from pathlib import Path

import torch

CSRC = Path(__file__).resolve().parent.parent / "csrc"
_SOURCES = ("bindings.cpp", "gumbel_softmax_cpu.cpp", "rng_debug.cpp")  # translation units; the rest are headers

# Per-ISA flags, as ATen compiles its own CPU_CAPABILITY kernels (cmake/Codegen.cmake). torch reports
# AVX2 only when the CPU has AVX2 and FMA, and AVX512 only with AVX512 F/BW/VL/DQ and FMA.
_ISA_FLAGS = {
    "DEFAULT": [],
    "AVX2": ["-mavx2", "-mfma", "-mf16c"],  # F16C: every AVX2 CPU has it; at::vec's fp16 path uses it
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
}
# at::parallel_for expands to `#pragma omp parallel` inline (ATen/ParallelOpenMP.h): without -fopenmp it
# silently runs on one thread. The resulting libgomp.so.1 dependency resolves, by soname, to the copy
# torch has already loaded, so the kernels share torch's thread pool and torch.set_num_threads.
_COMMON_FLAGS = ["-O3", "-fopenmp"]  # the C++ standard is torch's choice (C++20 for torch 2.14)
_LDFLAGS = ["-fopenmp"]

_lock = threading.Lock()
_state: dict[str, object] = {}  # "kernels": the loaded module or None, once an attempt was made


def cpu_variant() -> str:
    """The kernel variant for this CPU: torch's own CPU capability, or DEFAULT for any other ISA."""
    capability = torch.backends.cpu.get_cpu_capability()
    return capability if capability in _ISA_FLAGS else "DEFAULT"


def build_flags(variant: str) -> list[str]:
    """Compiler flags of a variant: optimization, the ISA, and the macros at::vec selects its width by."""
    return [*_COMMON_FLAGS, *_ISA_FLAGS[variant], f"-DCPU_CAPABILITY={variant}", f"-DCPU_CAPABILITY_{variant}"]


def extension_name(variant: str) -> str:
    """``gumbel_fused_cpu_<variant>_<digest>``: the digest covers everything the binary depends on."""
    digest = hashlib.sha256()
    for path in sorted(CSRC.iterdir()):
        if path.suffix in (".h", ".cpp"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(" ".join(build_flags(variant) + _LDFLAGS).encode())
    digest.update(f"{torch.__version__} {sys.version_info[:2]}".encode())
    return f"gumbel_fused_cpu_{variant.lower()}_{digest.hexdigest()[:12]}"


def _cpp_extension():
    """torch.utils.cpp_extension, imported without its "No CUDA runtime is found" log line: this
    backend builds no CUDA code, so on a CPU-only machine that line is noise in every process."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension as cpp_extension  # noqa: PLC0415 (0.1 s: only when loading)
    finally:
        logger.setLevel(level)
    return cpp_extension


def build_directory(name: str) -> Path:
    """Where cpp_extension builds ``name``: under ``$TORCH_EXTENSIONS_DIR`` when set, as torch does."""
    return Path(_cpp_extension()._get_build_directory(name, verbose=False))


def _import_library(name: str, library: Path):
    spec = importlib.util.spec_from_file_location(name, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build_and_load(variant: str):
    from torch.utils._filelock import FileLock  # noqa: PLC0415 (the lock cpp_extension.load takes)

    name = extension_name(variant)
    directory = build_directory(name)
    directory.mkdir(parents=True, exist_ok=True)
    library = directory / f"{name}.so"
    # A library that exists under the lock is complete: builders hold this lock until they finish.
    with FileLock(str(directory / "lock")):
        finished = library.exists()
    if finished:
        return _import_library(name, library)
    return _cpp_extension().load(
        name=name,
        sources=[str(CSRC / s) for s in _SOURCES],
        extra_cflags=build_flags(variant),
        extra_ldflags=_LDFLAGS,
        extra_include_paths=[str(CSRC)],
        build_directory=str(directory),
        verbose=False,
    )


def _failure_summary(exc: Exception) -> str:
    """The compiler's error lines when there are some (a build log is long), else the message's start."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() and not line.startswith("[")]
    return f"{type(exc).__name__}: " + " | ".join((errors or lines)[:3])[:600]


def load_cpu_kernels():
    """The C++ CPU kernels (a module with ``fwd`` and ``bwd``), or ``None`` when they cannot be built.

    The first call in a process builds the variant for this CPU (about a minute, once per cache) or
    loads the cached build. On failure (no compiler, no ninja, a build error) it warns once, with the
    reason, and every later call returns ``None`` without retrying.
    """
    if "kernels" in _state:
        return _state["kernels"]
    with _lock:
        if "kernels" not in _state:
            variant = cpu_variant()
            try:
                _state["kernels"] = _build_and_load(variant)
            except Exception as exc:  # any failure to build or import: fall back, never raise
                _state["kernels"] = None
                reason = _failure_summary(exc)
                warnings.warn(
                    f"gumbel_fused: the C++ CPU kernels ({variant}) could not be built or loaded, so CPU "
                    f"tensors use the slower pure-PyTorch reference. Reason: {reason}",
                    RuntimeWarning,
                    stacklevel=2,
                )
    return _state["kernels"]
