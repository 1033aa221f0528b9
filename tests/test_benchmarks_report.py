"""Smoke test of benchmarks/report.py on a small JSON shaped like pytest-benchmark's output."""

from __future__ import annotations

import json

import pytest

from .helpers import load_benchmark_script


def _load_report():
    return load_benchmark_script("report")


def _bench(suite, impl, device, median, direction="fwd", mode="hard", **extra):
    info = dict(suite=suite, impl=impl, device=device, shape_name="square", shape=[4, 8], dim=-1, dtype="fp32")
    info.update(direction=direction, mode=mode, bytes=2 * 32 * 4, **extra)
    return {"name": impl, "group": "g", "stats": {"median": median}, "extra_info": info}


@pytest.fixture
def bench_json(tmp_path):
    benchmarks = [
        _bench("gumbel", "eager", "cuda", 4e-6),
        _bench("gumbel", "compile", "cuda", 2e-6),
        _bench("gumbel", "fused-cuda", "cuda", 1e-6),
        _bench("gumbel", "eager", "cpu", 4e-3, direction="fwd+bwd"),
        _bench("gumbel", "fused-cpu", "cpu", 2e-3, direction="fwd+bwd"),
        _bench("memory", "eager", "cpu", 1.0, direction="fwd+bwd", peak_bytes=3 * 2**20, peak_per_input=3.0,
               saved_bytes=2**20),
        _bench("memory", "fused-cpu", "cpu", 1.0, direction="fwd+bwd", peak_bytes=2**20, peak_per_input=1.0,
               saved_bytes=0),
        _bench("train_step", "softmax-floor", "cpu", 1e-3),
        _bench("train_step", "fused-cpu", "cpu", 1.5e-3),
        _bench("sampling", "multinomial", "cpu", 0.32, mode="gumbel_max"),
        _bench("sampling", "eager", "cpu", 0.24, mode="gumbel_max"),
        _bench("sampling", "fused-cpu", "cpu", 0.01, mode="gumbel_max"),
        _bench("fallback", "reference", "cpu", 3e-3, rival="eager", rival_median=4e-3),
        _bench("targets", "fused-cpu", "cpu", 5e-5, rival="eager", rival_median=7e-4, target=20.0, threads=2),
        _bench("overhead", "fused-cpu", "cpu", 6e-5, rival="kernels", rival_median=5.5e-5, median_difference=5e-6),
        _bench("overhead", "eager", "cpu", 9e-4),
        _bench("estimators", "eager", "cpu", 8e-3, "fwd+bwd", estimator="reinmax", estimator_impl="eager"),
        _bench("estimators", "fused-cpu", "cpu", 1.1e-3, "fwd+bwd", estimator="reinmax", estimator_impl="fused"),
        _bench("estimators", "fused-st", "cpu", 1e-3, "fwd+bwd", estimator="reinmax", estimator_impl="fused-st"),
        {"name": "skipped", "group": None, "stats": None, "extra_info": {}},
    ]  # fmt: skip
    machine = {"cpu_model": "Test CPU", "gpu_name": "NVIDIA H100 80GB HBM3", "torch_version": "2.x"}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"machine_info": machine, "commit_info": {"id": "abc"}, "benchmarks": benchmarks}))
    return path


def test_markdown_tables(bench_json, tmp_path):
    report = _load_report()
    machine, benchmarks = report.load([bench_json])
    out = tmp_path / "md.md"
    report.write_markdown(machine, benchmarks, out)
    text = out.read_text()
    assert "NVIDIA H100 80GB HBM3" in text and "3.35 TB/s" in text
    assert "| 4.00x | 2.00x |" in text  # cuda fwd: fused vs eager, vs compile
    assert "% of peak" in text  # 256 B / 1 us = 0.256 GB/s of 3.35 TB/s
    assert "3.0 MiB (3.0x)" in text  # memory table
    assert "(+50%)" in text  # train step above the floor
    assert "| gumbel_max | 320 ms | 240 ms | 10 ms | 32.00x | 24.00x |" in text  # sampling table
    assert "| square (4, 8) | hard | 4 ms | 3 ms | 0.75x |" in text  # fallback: reference / its interleaved eager
    assert "| square (4, 8) | fwd | 2 | 700 us | 50 us | 14.00x | 20x |" in text  # targets: eager / fused, paired
    assert "| fwd | hard | 55 us | 60 us | +5.0 us | 900 us | 15.00x |" in text  # overhead: kernels, fused, eager
    assert "| reinmax | 8 ms | 1.1 ms | 1 ms | 7.27x | 1.10x |" in text  # estimators: vs eager, vs fused ST-GS


def test_overhead_table_reads_runs_from_before_the_pairing():
    # benchmarks/results/cpu-2core.json: the kernels timed in a benchmark of their own, no median_difference.
    report = _load_report()
    benchmarks = [
        _bench("overhead", "kernels", "cpu", 5e-5),
        _bench("overhead", "fused-cpu", "cpu", 6e-5, overhead_us=10.0),
        _bench("overhead", "eager", "cpu", 9e-4),
    ]
    table = report.overhead_table(report.by_case(benchmarks, "overhead"))
    assert "| fwd | hard | 50 us | 60 us | +10.0 us | 900 us | 15.00x |" in table


def test_gpu_peak_lookup():
    report = _load_report()
    assert report.gpu_peak_bandwidth("NVIDIA H100 PCIe") == 2.0e12
    assert report.gpu_peak_bandwidth("NVIDIA H100 80GB HBM3") == 3.35e12
    assert report.gpu_peak_bandwidth("Some GPU") is None


def test_main_writes_png(bench_json, tmp_path):
    pytest.importorskip("matplotlib")
    _load_report().main([str(bench_json), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "benchmarks.md").stat().st_size > 0
    assert (tmp_path / "out" / "benchmarks.png").read_bytes()[:4] == b"\x89PNG"


def test_legend_glyphs_are_distinct():
    """Every legend entry drawn in gray (the shapes, hard and soft) has a glyph of its own."""
    pytest.importorskip("matplotlib")
    from matplotlib.lines import Line2D

    report = _load_report()
    shapes = list(report.SHAPE_ORDER)
    handles = report.legend_handles([], {}, shapes, dict(zip(shapes, report.SHAPE_MARKERS, strict=False)))

    def glyph(handle):
        if isinstance(handle, Line2D):
            return ("marker", handle.get_marker(), handle.get_markerfacecolor() != "none")
        return ("patch", handle.get_fill() and tuple(handle.get_facecolor()))

    glyphs = [glyph(h) for h in handles]
    assert [h.get_label() for h in handles] == [*shapes, "hard", "soft"]
    assert len(set(glyphs)) == len(glyphs), glyphs
