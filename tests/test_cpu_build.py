"""Building and loading the C++ CPU backend (gumbel_fused/_cpu.py): the sources and the variant, the one
line a first build prints, the one warning when it cannot build (no compiler, no ninja, a compile error),
the cached load, and the DEFAULT variant built by two processes at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import types
import warnings
from pathlib import Path

import pytest
import torch

from gumbel_fused import _cpu
from gumbel_fused.reference import perturbed_logits_ref

from .test_cpu import _assert_hard_matches, _compiler_available, _logits, load_probe, require_kernels

REPO = Path(__file__).resolve().parents[1]
BUILD_LINE = "gumbel_fused: building the C++ CPU kernels"


@pytest.fixture(scope="module")
def kernels():
    return require_kernels()


def test_isa_variant_and_vector_width(kernels):
    """The loaded kernels are this CPU's variant, and its flags give at::vec the width it should have."""
    variant, probe = _cpu.cpu_variant(), load_probe()
    assert kernels.__name__ == _cpu.extension_name(variant)
    assert kernels.__name__.startswith(f"gumbel_fused_cpu_{variant.lower()}_")
    assert probe.cpu_capability() == variant
    float_lanes, double_lanes = probe.vec_sizes()
    # at::vec: 512-bit registers for AVX512, 256 bits for AVX2 and for DEFAULT's portable arrays.
    assert (float_lanes, double_lanes) == ((16, 8) if variant == "AVX512" else (8, 4))


def test_shipped_extension_has_no_debug_entry_points(kernels):
    # Exactly the ops' entry points: gumbel_softmax's two directions, its forward with the autograd node and the
    # estimators' sample_index, the two sampling ops, and the eager path's seed draw.
    expected = {"fwd", "bwd", "fwd_with_grad", "sample_index", "gumbel_max", "gumbel_topk", "seed"}
    assert {name for name in dir(kernels) if not name.startswith("__")} == expected


def test_sources_are_every_cpp_and_header_of_csrc():
    """From a checkout the sources are its csrc/ (what an installed copy ships as gumbel_fused/_csrc)."""
    assert _cpu.source_dir() == REPO / "csrc"
    assert [p.name for p in _cpu.kernel_sources()] == sorted(p.name for p in (REPO / "csrc").glob("*.cpp"))
    assert "bindings.cpp" in [p.name for p in _cpu.kernel_sources()]


def _fallback_warnings(monkeypatch, error: Exception) -> list[warnings.WarningMessage]:
    """The warnings of two kernel loads that fail with ``error``, in a fresh state."""

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(_cpu, "_state", {})
    monkeypatch.setattr(_cpu, "load_extension", fail)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _cpu.load_cpu_kernels() is None
        assert _cpu.load_cpu_kernels() is None
    return [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_fallback_warns_once_with_the_cause_and_the_fix(monkeypatch):
    caught = _fallback_warnings(monkeypatch, _cpu.BuildUnavailable("c++: not found", "install a C++ compiler"))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "(c++: not found)" in message and "To get them, install a C++ compiler" in message
    assert "pure-PyTorch reference, which is slower" in message
    assert caught[0].filename == __file__  # the caller's line, not gumbel_fused's


def test_fallback_warning_quotes_the_compiler_errors(monkeypatch, tmp_path):
    """A real failed build (a source with an #error, which fails in a second): the warning quotes the
    compiler's error line rather than ninja's command lines."""
    if not _compiler_available() or shutil.which("ninja") is None:
        pytest.skip("needs a compiler and ninja")
    bad = tmp_path / "bad.cpp"
    bad.write_text("#error the compiler says no\n")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError) as failure:
        _cpu.load_extension("gumbel_fused_bad", [bad], "DEFAULT")
    caught = _fallback_warnings(monkeypatch, failure.value)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "bad.cpp:1:2: error: #error the compiler says no" in message, message
    assert "-DCPU_CAPABILITY" not in message and "ninja" not in message, message


def test_ninja_from_the_ninja_package_when_not_on_path(monkeypatch, tmp_path):
    """pip puts the ninja package's binary in the environment's bin/, on no PATH unless it is activated."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "ninja", type(sys)("ninja"))
    sys.modules["ninja"].BIN_DIR = "/opt/env/bin"
    assert _cpu._ninja_directory() == "/opt/env/bin"
    with _cpu._ninja_on_path("/opt/env/bin"):
        assert os.environ["PATH"] == f"{tmp_path}{os.pathsep}/opt/env/bin"
    assert os.environ["PATH"] == str(tmp_path)
    monkeypatch.setitem(sys.modules, "ninja", None)  # not installed
    with pytest.raises(_cpu.BuildUnavailable, match="ninja: not found"):
        _cpu._ninja_directory()


def _run_python(code: str, env_extra: dict[str, str], drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter on this checkout, with ``env_extra`` set and ``drop`` unset."""
    env = {k: v for k, v in os.environ.items() if k not in drop} | env_extra | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO, timeout=600,
                          capture_output=True, text=True)  # fmt: skip


def test_missing_compiler_falls_back_with_one_warning(tmp_path):
    """ninja on PATH but no c++ (and no CXX), empty cache: one warning that names the cause and the fix and
    points at the user's line, nothing else on stderr (torch's compiler check stays quiet), and the ops
    still work."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ninja = shutil.which("ninja")
    if ninja is None:
        pytest.skip("no ninja on PATH to keep")
    (bin_dir / "ninja").symlink_to(ninja)
    env = {"PATH": str(bin_dir), "TORCH_EXTENSIONS_DIR": str(tmp_path / "cache")}
    result = _run_python(
        """
        import warnings, torch
        from gumbel_fused import _cpu, gumbel_softmax
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = gumbel_softmax(torch.randn(4, 5), hard=True)  # line 6 of this script
            assert _cpu.load_cpu_kernels() is None
        assert ((y == 0) | (y == 1)).all() and (y.sum(dim=1) == 1).all()
        x = torch.randn(4, 5, requires_grad=True)  # a training call: no C++ autograd node either
        gumbel_softmax(x, hard=True, estimator="reinmax").sum().backward()
        assert x.grad is not None and x.grad.isfinite().all()
        ours = [w for w in caught if "C++ CPU kernels" in str(w.message)]
        assert len(ours) == 1, [str(w.message) for w in caught]
        assert (ours[0].filename, ours[0].lineno) == ("<string>", 6), (ours[0].filename, ours[0].lineno)
        print(ours[0].message)
        """,
        env,
        drop=("CXX",),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(c++: not found)" in result.stdout and "apt-get install g++" in result.stdout and "CXX" in result.stdout
    assert result.stderr == "", result.stderr


def test_cached_build_loads_fast(kernels):
    """After the first build, loading the extension and a first call take well under a second (the
    package's import excluded): the cached library is imported directly, with no compiler or ninja run,
    and no build line on stderr."""
    result = _run_python(
        """
        import time, torch
        from gumbel_fused import _cpu
        start = time.perf_counter()
        kernels = _cpu.load_cpu_kernels()
        kernels.fwd(torch.randn(8, 10, 1), 0, 1.0, True)
        print(time.perf_counter() - start)
        """,
        {},
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.split()[-1]) < 1.0
    assert BUILD_LINE not in result.stderr


def test_cached_build_loads_under_an_older_torchs_lock_file(monkeypatch, tmp_path):
    """Older torch (2.11, say) locks a build with a FileBaton, whose lock is the existence of ``lock`` in the build
    directory. The loader takes that lock the same way, so it leaves no file behind for torch's build to wait on
    forever, and it waits while a build holds it."""
    from torch.utils import cpp_extension
    from torch.utils.file_baton import FileBaton

    older_torch = types.SimpleNamespace(FileBaton=FileBaton, _get_build_directory=cpp_extension._get_build_directory)
    monkeypatch.setattr(_cpu, "_cpp_extension", lambda: older_torch)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    directory = _cpu.build_directory("probe")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "probe.so").write_bytes(b"")
    imported = []
    monkeypatch.setattr(_cpu, "_import_library", lambda name, library: imported.append(library) or "module")
    assert _cpu.load_extension("probe", [], "DEFAULT") == "module" and imported == [directory / "probe.so"]
    assert not (directory / "lock").exists()

    builder = FileBaton(str(directory / "lock"))  # a build in progress
    assert builder.try_acquire()
    done = threading.Event()
    loader = threading.Thread(target=lambda: (_cpu.load_extension("probe", [], "DEFAULT"), done.set()))
    loader.start()
    assert not done.wait(0.3)  # waits for the build
    builder.release()
    loader.join(10)
    assert done.is_set() and not (directory / "lock").exists()


@pytest.mark.slow
def test_default_variant_builds_concurrently_and_agrees(kernels, request, tmp_path):
    """Two processes load the DEFAULT (no SIMD flags: the scalar Philox) variant from one cache at the same
    time, and its results match this process's variant. The cache lives in pytest's cache folder, so that
    only the first run after a change of csrc/ builds it (a fresh clone, as in CI, always does): then the
    build directory's lock serializes the two, both load the one build, and each says it builds at most
    once."""
    pytest_cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    cache = pytest_cache.mkdir("gumbel_fused_extensions") if pytest_cache else tmp_path / "cache"
    env = {"ATEN_CPU_CAPABILITY": "default", "TORCH_EXTENSIONS_DIR": str(cache)}
    name = _cpu.extension_name("DEFAULT")
    for stale in cache.glob("gumbel_fused_cpu_default_*"):  # older sources' builds
        if stale.name != name:
            shutil.rmtree(stale)
    cold = not (cache / name / f"{name}.so").exists()
    x = _logits(3, 70, 20, torch.float32, "contiguous", gen_seed=11)
    torch.save(x, tmp_path / "x.pt")
    code = f"""
        import torch
        from gumbel_fused import _cpu
        assert _cpu.cpu_variant() == "DEFAULT"
        k = _cpu.load_cpu_kernels()
        assert k is not None and k.__name__ == {name!r}
        x = torch.load({str(tmp_path / "x.pt")!r})
        torch.save([k.fwd(x, torch.tensor(5), 0.7, h) for h in (False, True)], {str(tmp_path)!r} + "/out_%s.pt")
        """
    procs = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(code % i)], env={**os.environ, **env,
                         "PYTHONPATH": str(REPO)}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for i in range(2)
    ]  # fmt: skip
    announced = 0
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, out + err
        assert err.count(BUILD_LINE) <= 1, err
        announced += err.count(BUILD_LINE)
    assert announced >= 1 if cold else announced == 0
    soft, hard = kernels.fwd(x, 5, 0.7, False), kernels.fwd(x, 5, 0.7, True)
    for i in range(2):
        other_soft, other_hard = torch.load(tmp_path / f"out_{i}.pt")
        torch.testing.assert_close(other_soft, soft, atol=2e-6, rtol=2e-5)
        _assert_hard_matches(other_hard, hard, perturbed_logits_ref(x, 5, 0.7))
    assert [p.name for p in cache.glob("gumbel_fused_cpu_default_*")] == [name]
