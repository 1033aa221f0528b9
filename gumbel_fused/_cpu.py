"""The C++ CPU backend: built on first use, cached on disk, picked by instruction set at run time.

``load_cpu_kernels()`` returns the extension module (``fwd`` and ``bwd``), or ``None`` after one warning
when it cannot be built, in which case callers use the reference.

Why a build on first use rather than ahead of time: the wheel stays pure Python, so one wheel serves
every torch in the supported range (a compiled extension is tied to the torch it was built against) and
every CPU, and the variant is chosen on the machine that runs it. The cost is a compiler and ninja at
run time, and one build of 1-2 minutes per machine, announced on stderr while it runs.

How it builds and loads:

* The sources are every ``.cpp`` (one per op, plus the bindings) and ``.h`` in the repository's
  ``csrc/``. Installed from a wheel or by ``pip install .``, they are the package's data directory
  ``gumbel_fused/_csrc`` (setup.py maps ``csrc/`` there), found with :mod:`importlib.resources`. In a
  source tree (an editable install, or a checkout on ``sys.path``) that directory does not exist, and
  the tree's own ``csrc/`` is used, so edits to it are always what gets built.
* :func:`torch.utils.cpp_extension.load` compiles them into ``$TORCH_EXTENSIONS_DIR`` (torch's default
  cache when unset) with ninja: the one on ``PATH``, or the ``ninja`` package's, which pip installs into
  an environment's ``bin/`` that is on no ``PATH`` unless the environment is activated.
* One variant per instruction set, each a separately named extension: ``DEFAULT`` (baseline x86-64
  or the host's baseline elsewhere), ``AVX2`` and ``AVX512``, compiled with the flags and the
  ``CPU_CAPABILITY*`` macros that ATen's own per-ISA kernels use, so ``at::vec::Vectorized`` has
  8 (DEFAULT, AVX2) or 16 (AVX512) fp32 lanes. The variant is chosen by
  ``torch.backends.cpu.get_cpu_capability()`` (which honours ``ATEN_CPU_CAPABILITY``), so a cache
  shared between machines never runs an instruction the CPU lacks; only the chosen one is built.
  No ``-march=native``, no ``-ffast-math``.
* The extension name carries a digest of every source file, the flags and the torch and Python
  versions. A cached build is therefore never stale, and when its library exists it is imported
  directly (tens of ms), with no compiler or ninja run. That check happens under the build
  directory's lock, the one ``cpp_extension.load`` holds while it builds, so concurrent processes
  wait for one build and then load it, and a half-written library is never imported.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import importlib.util
import logging
import os
import re
import shutil
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

_PACKAGE = __name__.partition(".")[0]

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
_COMMON_FLAGS = ("-O3", "-fopenmp")  # the C++ standard is torch's choice (C++20 for torch 2.14)
_LDFLAGS = ("-fopenmp",)

_lock = threading.Lock()
_state: dict[str, object] = {}  # "kernels": the loaded module or None, once an attempt was made


class BuildUnavailable(RuntimeError):
    """A tool the build needs is missing: ``reason`` names it, ``fix`` says how to get it."""

    def __init__(self, reason: str, fix: str):
        super().__init__(reason)
        self.reason, self.fix = reason, fix


def source_dir() -> Path:
    """The directory of the C++ sources: the installed package's ``_csrc``, or a source tree's ``csrc/``."""
    package = importlib.resources.files(_PACKAGE)
    installed = package / "_csrc"
    if installed.is_dir():
        return Path(str(installed))
    # A source tree: setup.py's mapping of csrc/ applies to built wheels only (an editable install's
    # finder cannot import a folder with no __init__.py), so use the csrc/ of the tree the package is in.
    return Path(str(package)).parent / "csrc"


def kernel_sources() -> list[Path]:
    """The translation units of the shipped extension: every ``.cpp`` in the source directory."""
    return sorted(source_dir().glob("*.cpp"))


def cpu_variant() -> str:
    """The kernel variant for this CPU: torch's own CPU capability, or DEFAULT for any other ISA."""
    capability = torch.backends.cpu.get_cpu_capability()
    return capability if capability in _ISA_FLAGS else "DEFAULT"


def build_flags(variant: str) -> list[str]:
    """Compiler flags of a variant: optimization, the ISA, and the macros at::vec selects its width by."""
    return [*_COMMON_FLAGS, *_ISA_FLAGS[variant], f"-DCPU_CAPABILITY={variant}", f"-DCPU_CAPABILITY_{variant}"]


def extension_name(variant: str, prefix: str = "gumbel_fused_cpu", extra_files: Sequence[Path] = ()) -> str:
    """``<prefix>_<variant>_<digest>``: the digest covers everything the binary depends on, the source
    directory's files and ``extra_files`` (a test's own sources) included."""
    digest = hashlib.sha256()
    for path in [*sorted(source_dir().iterdir()), *extra_files]:
        if path.suffix in (".h", ".cpp"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(" ".join([*build_flags(variant), *_LDFLAGS]).encode())
    digest.update(f"{torch.__version__} {sys.version_info[:2]}".encode())
    return f"{prefix}_{variant.lower()}_{digest.hexdigest()[:12]}"


@contextlib.contextmanager
def _quiet_torch_logger() -> Iterator[None]:
    """Hold back cpp_extension's log warnings: its "No CUDA runtime is found" line at import (this
    backend builds no CUDA code), and its compiler checks, which log a traceback for a missing compiler.
    Our own preflight and warning say what went wrong, once."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _cpp_extension():
    with _quiet_torch_logger():
        import torch.utils.cpp_extension as cpp_extension  # noqa: PLC0415 (0.1 s: only when loading)
    return cpp_extension


def build_directory(name: str) -> Path:
    """Where cpp_extension builds ``name``: under ``$TORCH_EXTENSIONS_DIR`` when set, as torch does."""
    return Path(_cpp_extension()._get_build_directory(name, verbose=False))


def _ninja_directory() -> str | None:
    """The directory to add to PATH for ninja: None when ``ninja`` is on PATH already."""
    if shutil.which("ninja"):
        return None
    try:
        import ninja  # noqa: PLC0415 (the PyPI package, a dependency; only needed to build)
    except ImportError:
        raise BuildUnavailable("ninja: not found", "install ninja (`pip install ninja`)") from None
    return ninja.BIN_DIR


def _check_compiler() -> None:
    compiler = os.environ.get("CXX", "c++")  # the name cpp_extension runs
    if shutil.which(compiler) is None:
        raise BuildUnavailable(
            f"{compiler}: not found",
            "install a C++ compiler (e.g. `apt-get install g++`) or set CXX to one",
        )


@contextlib.contextmanager
def _ninja_on_path(directory: str | None) -> Iterator[None]:
    """cpp_extension runs ``ninja`` by name: put the package's binary last on PATH while it builds."""
    if directory is None:
        yield
        return
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{path}{os.pathsep}{directory}" if path else directory
    try:
        yield
    finally:
        os.environ["PATH"] = path


def _import_library(name: str, library: Path):
    spec = importlib.util.spec_from_file_location(name, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _build_lock(directory: Path) -> Iterator[None]:
    """Hold the lock that ``cpp_extension.load`` holds while it builds in ``directory``. Recent torch takes an
    OS-level file lock (``torch.utils._filelock``) on ``directory/lock``; older torch (2.11, say) a
    ``FileBaton``, whose lock is that file's existence: a file lock taken there would leave the file behind,
    and torch's build would then wait for it to go, forever."""
    cpp_extension = _cpp_extension()
    path = str(directory / "lock")
    if hasattr(cpp_extension, "FileBaton"):
        baton = cpp_extension.FileBaton(path)
        while not baton.try_acquire():
            baton.wait()
        try:
            yield
        finally:
            baton.release()
    else:
        from torch.utils._filelock import FileLock  # noqa: PLC0415

        with FileLock(path):
            yield


def load_extension(name: str, sources: Sequence[Path], variant: str, announce: str | None = None):
    """Import the extension ``name`` from the cache, or build it from ``sources`` (with the source
    directory on the include path) and import it; ``announce`` goes to stderr when a build starts.
    Raises :class:`BuildUnavailable` when the compiler or ninja is missing, else what the build raises."""
    directory = build_directory(name)
    directory.mkdir(parents=True, exist_ok=True)
    library = directory / f"{name}.so"
    # A library that exists under the lock is complete: builders hold this lock until they finish.
    with _build_lock(directory):
        finished = library.exists()
    if finished:
        return _import_library(name, library)
    _check_compiler()
    ninja = _ninja_directory()
    if announce:
        print(announce.format(directory=directory), file=sys.stderr, flush=True)
    with _ninja_on_path(ninja), _quiet_torch_logger():
        return _cpp_extension().load(
            name=name,
            sources=[str(s) for s in sources],
            extra_cflags=build_flags(variant),
            extra_ldflags=list(_LDFLAGS),  # a copy: cpp_extension appends torch's libraries to it
            extra_include_paths=[str(source_dir())],
            build_directory=str(directory),
            verbose=False,
        )


def _failure_summary(exc: Exception) -> str:
    """The compiler's error lines when there are some, else the message's start. A build error's message
    is ninja's whole log: a header line that runs on into the first command line, ``[i/n]`` command lines,
    ``FAILED:`` lines, then the compiler's output."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [
        line
        for line in lines[1:]
        if re.search(r"error|not found", line, re.IGNORECASE) and not line.startswith(("[", "FAILED:"))
    ]
    return f"{type(exc).__name__}: " + " | ".join((errors or lines)[:3])[:600]


def _warn_at_caller(message: str) -> None:
    """Warn at the first frame outside this package and torch: the user's line that reached the kernels
    (through the op layer and torch's dispatch), not a line of ours."""
    internal = tuple(os.path.dirname(module.__file__) + os.sep for module in (sys.modules[_PACKAGE], torch))
    frame, stacklevel = sys._getframe(1), 2  # stacklevel 2 is this function's caller
    while frame.f_back is not None and frame.f_code.co_filename.startswith(internal):
        frame, stacklevel = frame.f_back, stacklevel + 1
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)


def load_cpu_kernels():
    """The C++ CPU kernels (a module with ``fwd`` and ``bwd``), or ``None`` when they cannot be built.

    The first call in a process builds the variant for this CPU (1-2 minutes, once per cache; one line
    on stderr says so) or loads the cached build. On failure (no compiler, no ninja, a build error) it
    warns once, with the cause and the fix, and every later call returns ``None`` without retrying.
    """
    if "kernels" in _state:
        return _state["kernels"]
    with _lock:
        if "kernels" not in _state:
            variant = cpu_variant()
            announce = (
                f"gumbel_fused: building the C++ CPU kernels ({variant}) once for this machine; this usually "
                "takes 1-2 minutes. Later runs load the build from {directory}"
            )
            try:
                _state["kernels"] = load_extension(extension_name(variant), kernel_sources(), variant, announce)
            except Exception as exc:  # any failure to build or import: fall back, never raise
                _state["kernels"] = None
                if isinstance(exc, BuildUnavailable):
                    cause, fix = exc.reason, f"To get them, {exc.fix}; they then build on first use."
                else:
                    cause, fix = _failure_summary(exc), "To get them, fix that error (CXX selects the compiler)."
                _warn_at_caller(
                    f"gumbel_fused: the C++ CPU kernels ({variant}) are unavailable ({cause}), so CPU tensors "
                    f"use the pure-PyTorch reference, which is slower. {fix}"
                )
    return _state["kernels"]
