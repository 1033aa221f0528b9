"""Turn pytest-benchmark's ``--benchmark-json`` output into a Markdown report and a throughput plot.

    python benchmarks/report.py BENCH.json [MORE.json ...] --out DIR

writes ``DIR/benchmarks.md`` (machine details, a summary of the fused op's median speed-ups, the full
table of median times, speed-ups against eager and torch.compile and achieved bandwidth, the memory,
training-step, sampling, fallback and gradient-estimator tables) and ``DIR/benchmarks.png`` (elements/s
against problem size, one line per implementation). Speed-up = median time of the baseline / median time of
the fused op, so above 1 means the fused op is faster. GB/s = the nominal bytes moved (see
``benchmarks/_common.py``) divided by the median time; on a GPU whose peak bandwidth is known it is also given as
a percentage of peak.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

# Peak DRAM bandwidth in bytes/s from the vendors' data sheets; the first matching substring of the
# device name wins, so specific variants come before the generic name.
GPU_PEAK_BANDWIDTH = [
    ("H100 PCIe", 2.0e12),
    ("H100 NVL", 3.9e12),
    ("H100", 3.35e12),
    ("H200", 4.8e12),
    ("A100-SXM4-80GB", 2.039e12),
    ("A100 80GB PCIe", 1.935e12),
    ("A100", 1.555e12),
    ("L40S", 0.864e12),
    ("A10G", 0.6e12),
    ("L4", 0.3e12),
]
BASELINES = ("eager", "compile")
SHAPE_ORDER = ("vae", "tall", "square", "vocab", "long", "dvae")
SHAPE_MARKERS = "osD^vPX*"  # matplotlib markers, given to the shapes in order


def gpu_peak_bandwidth(name: str | None) -> float | None:
    """Peak bytes/s of the GPU called ``name``, or None when it is not in the table."""
    for key, peak in GPU_PEAK_BANDWIDTH:
        if name and key in name:
            return peak
    return None


def load(paths: list[Path]) -> tuple[dict, list[dict]]:
    """The first file's machine and commit info, and the benchmarks of all files."""
    machine, benchmarks = None, []
    for path in paths:
        data = json.loads(path.read_text())
        if machine is None:
            machine = {
                **data.get("machine_info", {}),
                "datetime": data.get("datetime"),
                "commit": data.get("commit_info"),
            }
        benchmarks.extend(b for b in data["benchmarks"] if b.get("stats") and b.get("extra_info", {}).get("suite"))
    if machine is None:
        raise SystemExit("no JSON file given")
    return machine, benchmarks


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def fmt_ratio(num: float | None, den: float | None) -> str:
    return f"{num / den:.2f}x" if num and den else "-"


def fmt_bytes(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


def median(b: dict) -> float:
    return b["stats"]["median"]


def shape_key(info: dict) -> tuple:
    name = info["shape_name"]
    return (SHAPE_ORDER.index(name) if name in SHAPE_ORDER else len(SHAPE_ORDER), name)


def by_case(benchmarks: list[dict], suite: str) -> dict[tuple, dict[str, dict]]:
    """``{(device, shape_name, shape, dtype, direction, mode): {impl family: benchmark}}``, sorted.

    The family drops the device from ``fused-cpu``/``fused-cuda``, which the key already holds.
    """
    cases: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for b in benchmarks:
        info = b["extra_info"]
        if info["suite"] != suite:
            continue
        key = (info["device"], info["shape_name"], tuple(info["shape"]), info["dtype"], info["direction"], info["mode"])
        cases[key][info["impl"].split("-")[0] if info["impl"].startswith("fused") else info["impl"]] = b
    order = {"cpu": 0, "cuda": 1}
    return dict(
        sorted(cases.items(), key=lambda kv: (order.get(kv[0][0], 2), shape_key({"shape_name": kv[0][1]}), kv[0][3:]))
    )


def machine_lines(m: dict) -> list[str]:
    commit = m.get("commit") or {}
    lines = [
        f"- Measured {m.get('datetime', '?')} at commit `{str(commit.get('id', '?'))[:10]}`"
        f"{' (dirty tree)' if commit.get('dirty') else ''}, {m.get('bench_mode', '?')} mode.",
        f"- CPU: {m.get('cpu_model', m.get('processor', '?'))}, {m.get('cpu_count', '?')} cores, "
        f"torch threads {m.get('torch_threads', '?')}; load average at start {m.get('load_average', '?')}.",
        f"- {m.get('system', '?')} {m.get('release', '')}, Python {m.get('python_version', '?')}, "
        f"torch {m.get('torch_version', '?')}, triton {m.get('triton_version') or 'not installed'}, "
        f"gumbel-fused {m.get('gumbel_fused_version', '?')}.",
        f"- `fused-cpu` runs the {m.get('fused_cpu_backend', '?')} backend.",
    ]
    if m.get("gpu_name"):
        peak = gpu_peak_bandwidth(m["gpu_name"])
        peak_text = f", peak bandwidth {peak / 1e12:.2f} TB/s" if peak else ", peak bandwidth unknown"
        lines.append(
            f"- GPU: {m['gpu_name']} ({m.get('gpu_memory_gib', '?')} GiB), CUDA {m.get('cuda_version')}{peak_text}."
        )
    else:
        lines.append("- GPU: none.")
    return lines


def summary_table(cases: dict) -> list[str]:
    """Median speed-ups of the fused op, fp32 hard, per device and shape, forward and forward + backward."""
    rows: dict[tuple, dict[str, str]] = defaultdict(dict)
    for (device, name, shape, dtype, direction, mode), impls in cases.items():
        if dtype != "fp32" or mode != "hard" or "fused" not in impls:
            continue
        fused = median(impls["fused"])
        for base in BASELINES:
            other = median(impls[base]) if base in impls else None
            rows[(device, name, shape)][f"{direction} {base}"] = fmt_ratio(other, fused)
    cols = [f"{d} {b}" for d in ("fwd", "fwd+bwd") for b in BASELINES]
    out = [
        "| device | shape | " + " | ".join(f"{c.replace(' ', ' vs ')}" for c in cols) + " |",
        "|---|---|" + "---:|" * len(cols),
    ]
    for (device, name, shape), vals in rows.items():
        out.append(f"| {device} | {name} {shape} | " + " | ".join(vals.get(c, "-") for c in cols) + " |")
    return out


def speed_table(cases: dict, peak: float | None) -> list[str]:
    out = [
        "| device | shape | dtype | direction | mode | eager | compile | fused | fused vs eager | "
        "fused vs compile | fused GB/s |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (device, name, shape, dtype, direction, mode), impls in cases.items():
        times = {k: median(v) for k, v in impls.items()}
        fused = times.get("fused")
        gbps = "-"
        if fused:
            gb = impls["fused"]["extra_info"]["bytes"] / fused / 1e9
            gbps = f"{gb:.3g}"
            if device == "cuda" and peak:
                gbps += f" ({gb * 1e9 / peak:.0%} of peak)"
        out.append(
            f"| {device} | {name} {shape} | {dtype} | {direction} | {mode} | {fmt_time(times.get('eager'))} | "
            f"{fmt_time(times.get('compile'))} | {fmt_time(fused)} | {fmt_ratio(times.get('eager'), fused)} | "
            f"{fmt_ratio(times.get('compile'), fused)} | {gbps} |"
        )
    return out


def sampling_table(cases: dict) -> list[str]:
    """The sampling suite: each op's median time per implementation and the fused op's speed-ups, by shape."""
    baselines = ("multinomial", "eager")
    out = [
        "| device | shape | dtype | op | multinomial | eager | fused | fused vs multinomial | fused vs eager |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    order = {"cpu": 0, "cuda": 1}
    for (device, name, shape, dtype, _direction, op), impls in sorted(
        cases.items(), key=lambda kv: (order.get(kv[0][0], 2), kv[0][2], kv[0][3], kv[0][5])
    ):
        times = {k: median(v) for k, v in impls.items()}
        fused = times.get("fused")
        cells = [fmt_time(times.get(impl)) for impl in (*baselines, "fused")]
        ratios = [fmt_ratio(times.get(impl), fused) for impl in baselines]
        out.append(f"| {device} | {name} {shape} | {dtype} | {op} | " + " | ".join(cells + ratios) + " |")
    return out


def memory_table(cases: dict) -> list[str]:
    out = [
        "| device | shape | mode | eager peak | compile peak | fused peak "
        "| eager saved | compile saved | fused saved |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (device, name, shape, _dtype, _direction, mode), impls in cases.items():

        def cell(impl, field, impls=impls):
            info = impls.get(impl, {}).get("extra_info", {})
            if field not in info:
                return "-"
            text = fmt_bytes(info[field])
            return f"{text} ({info['peak_per_input']:.1f}x)" if field == "peak_bytes" else text

        peaks = " | ".join(cell(i, "peak_bytes") for i in (*BASELINES, "fused"))
        saved = " | ".join(cell(i, "saved_bytes") for i in (*BASELINES, "fused"))
        out.append(f"| {device} | {name} {shape} | {mode} | {peaks} | {saved} |")
    return out


def fallback_table(cases: dict) -> list[str]:
    """The pure-PyTorch fallback against eager ``F.gumbel_softmax`` (test_bench_fallback.py)."""
    out = ["| shape | mode | eager | reference | reference / eager |", "|---|---|---:|---:|---:|"]
    for (_device, name, shape, _dtype, _direction, mode), impls in cases.items():
        reference = median(impls["reference"])
        eager = impls["reference"]["extra_info"].get("rival_median")  # timed interleaved with the reference
        ratio = fmt_ratio(reference, eager)
        out.append(f"| {name} {shape} | {mode} | {fmt_time(eager)} | {fmt_time(reference)} | {ratio} |")
    return out


def targets_table(cases: dict) -> list[str]:
    """The fused op against eager at the VAE's size, timed in pairs, beside the target speed-up
    (test_bench_targets.py)."""
    out = ["| shape | direction | threads | eager | fused | speed-up | target |", "|---|---|---:|---:|---:|---:|---:|"]
    for (_device, name, shape, _dtype, direction, _mode), impls in cases.items():
        fused, info = median(impls["fused"]), impls["fused"]["extra_info"]
        eager = info.get("rival_median")  # timed interleaved with the fused op
        out.append(
            f"| {name} {shape} | {direction} | {info.get('threads', '-')} | {fmt_time(eager)} | {fmt_time(fused)} | "
            f"{fmt_ratio(eager, fused)} | {info['target']:.0f}x |"
        )
    return out


def train_table(benchmarks: list[dict]) -> list[str]:
    rows: dict[tuple, dict[str, float]] = defaultdict(dict)
    for b in benchmarks:
        info = b["extra_info"]
        if info["suite"] == "train_step":
            family = "fused" if info["impl"].startswith("fused") else info["impl"]
            rows[(info["device"], info["mode"])][family] = median(b)
    cols = ("softmax-floor", "eager", "compile", "fused")
    out = [
        "| device | mode | " + " | ".join(cols) + " | fused vs eager | fused vs compile |",
        "|---|---|" + "---:|" * (len(cols) + 2),
    ]
    for (device, mode), t in sorted(rows.items()):
        floor = t.get("softmax-floor")
        cells = [
            fmt_time(t.get(c)) + (f" ({t[c] / floor - 1:+.0%})" if floor and c in t and c != cols[0] else "")
            for c in cols
        ]
        out.append(
            f"| {device} | {mode} | "
            + " | ".join(cells)
            + f" | {fmt_ratio(t.get('eager'), t.get('fused'))} | {fmt_ratio(t.get('compile'), t.get('fused'))} |"
        )
    return out


def estimator_table(benchmarks: list[dict]) -> list[str]:
    """Each fused estimator against its authors' eager form and against fused ST-GS, per device and shape."""
    rows: dict[tuple, dict[str, float]] = defaultdict(dict)
    for b in benchmarks:
        info = b["extra_info"]
        if info["suite"] == "estimators":
            key = (info["device"], shape_key(info), info["shape_name"], tuple(info["shape"]), info["estimator"])
            rows[key][info["estimator_impl"]] = median(b)
    out = [
        "| device | shape | estimator | eager | fused | fused ST-GS | fused vs eager | fused / fused ST-GS |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for (device, _order, name, shape, estimator), t in sorted(rows.items()):
        out.append(
            f"| {device} | {name} {shape} | {estimator} | {fmt_time(t.get('eager'))} | {fmt_time(t.get('fused'))} | "
            f"{fmt_time(t.get('fused-st'))} | {fmt_ratio(t.get('eager'), t.get('fused'))} | "
            f"{fmt_ratio(t.get('fused'), t.get('fused-st'))} |"
        )
    return out


def overhead_table(cases: dict) -> list[str]:
    """What the public function adds to its own kernels, timed in pairs with them, and eager beside it
    (test_bench_overhead.py)."""
    out = [
        "| direction | mode | kernels | fused | overhead | eager | fused vs eager |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (_device, _name, _shape, _dtype, direction, mode), impls in cases.items():
        if "fused" not in impls:
            continue
        fused, info = median(impls["fused"]), impls["fused"]["extra_info"]
        eager = median(impls["eager"]) if "eager" in impls else None
        # Runs before the pairing (commit 313684f) timed the kernels in a benchmark of their own.
        kernels = info.get("rival_median", median(impls["kernels"]) if "kernels" in impls else None)
        difference = info.get("median_difference", fused - kernels if kernels else None)
        overhead = "-" if difference is None else f"{difference * 1e6:+.1f} us"
        out.append(
            f"| {direction} | {mode} | {fmt_time(kernels)} | {fmt_time(fused)} | {overhead} | {fmt_time(eager)} | "
            f"{fmt_ratio(eager, fused)} |"
        )
    return out


def write_markdown(machine: dict, benchmarks: list[dict], path: Path) -> None:
    speed, memory = by_case(benchmarks, "gumbel"), by_case(benchmarks, "memory")
    peak = gpu_peak_bandwidth(machine.get("gpu_name"))
    lines = ["# gumbel-fused benchmarks", "", *machine_lines(machine), ""]
    lines += [
        "Times are medians. Speed-up = baseline median / fused median (above 1: the fused op is faster). "
        "GB/s counts the bytes an ideal fused kernel moves: forward reads the logits and writes the output; "
        "forward + backward also reads the incoming grad and one saved tensor and writes the logits' grad.",
        "",
    ]
    if speed:
        lines += ["## Summary: speed-up of the fused op (fp32, hard)", "", *summary_table(speed), ""]
        lines += ["## All timings", "", *speed_table(speed, peak), ""]
    sampling = by_case(benchmarks, "sampling")
    if sampling:
        lines += [
            "## Sampling: gumbel_max and gumbel_topk at LLM shapes",
            "",
            "Baselines: `torch.multinomial` on the fp32 softmax (k draws without replacement for top-k), and eager "
            "Gumbel-max/top-k, `(x - log(exponential_())).argmax()` / `.topk(k)` in the logits' dtype "
            "(see `benchmarks/test_bench_sampling.py`).",
            "",
            *sampling_table(sampling),
            "",
        ]
    if memory:
        lines += [
            "## Memory: peak extra bytes of one forward + backward (fp32)",
            "",
            "Peak: bytes allocated above those live before the call, including the returned grad "
            "(in parentheses, in units of the logits' size). Saved: bytes autograd keeps for the backward, "
            "the logits excluded. CPU peaks come from the profiler's allocation events, CUDA peaks from "
            "`torch.cuda.max_memory_allocated` (see `benchmarks/test_bench_memory.py`).",
            "",
            *memory_table(memory),
            "",
        ]
    fallback = by_case(benchmarks, "fallback")
    if fallback:
        lines += [
            "## Fallback: the pure-PyTorch reference against eager, forward, fp32, 1 thread",
            "",
            "What runs on CPU when no C++ compiler can build the kernels (below 1x: faster than eager). "
            "Eager's calls are interleaved with the reference's, so that both see the same machine load.",
            "",
            *fallback_table(fallback),
            "",
        ]
    targets = by_case(benchmarks, "targets")
    if targets:
        lines += [
            "## Targets at the VAE's size: fused vs eager, timed in pairs (fp32, hard)",
            "",
            "Eager's calls are interleaved with the fused op's, so that both see the same machine load; the "
            "gumbel suite (the summary and timings tables) times them in separate benchmarks, each call back to back.",
            "",
            *targets_table(targets),
            "",
        ]
    overhead = by_case(benchmarks, "overhead")
    if overhead:
        lines += [
            "## Per-call overhead at the VAE's size: the public function against its kernels (fp32, 1 thread)",
            "",
            "The kernels: the C++ entry points called directly with a prepared seed (forward + backward also pays "
            "one autograd call of a trivial op, which every autograd call pays). Since commit 313684f they are timed "
            "interleaved with the public function, so that both see the same machine load, and the overhead is the "
            "median of the paired differences; eager is timed on its own.",
            "",
            *overhead_table(overhead),
            "",
        ]
    if any(b["extra_info"]["suite"] == "train_step" for b in benchmarks):
        lines += [
            "## Training step of the reference VAE (20x10 latents, batch 100, Adam)",
            "",
            "In parentheses: the time above the softmax floor (no noise, no sampling).",
            "",
            *train_table(benchmarks),
            "",
        ]
    if any(b["extra_info"]["suite"] == "estimators" for b in benchmarks):
        lines += [
            "## Gradient estimators: fused vs their authors' eager forms (fp32, hard, forward + backward)",
            "",
            "Eager forms: `gumbel_fused/reference/published.py` (Gumbel-Rao with R = 10). The last column is the "
            "fused estimator's time over fused ST-GS's, measured in the same group.",
            "",
            *estimator_table(benchmarks),
            "",
        ]
    path.write_text("\n".join(lines))


def legend_handles(impls: list[tuple], colors: dict, shapes: list[str], markers: dict) -> list:
    """Legend entries: a colour per implementation, a marker per shape, and the fill for hard/soft.

    The fill entries are bars (patches), which look like no shape's marker: drawn as a marker, "hard"
    would show the same glyph as the first shape (vae, a filled circle).
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D(
            [], [], color=colors[k], marker="o", ls="", label=k[1] if k[1].startswith("fused") else f"{k[1]} ({k[0]})"
        )
        for k in impls
    ]
    handles += [Line2D([], [], color="gray", marker=markers[n], ls="", label=n) for n in shapes]
    handles += [
        Patch(facecolor="gray", edgecolor="gray", label="hard"),
        Patch(facecolor="none", edgecolor="gray", label="soft"),
    ]
    return handles


def write_plot(benchmarks: list[dict], path: Path) -> None:
    """Elements/s against elements per call: a panel per (direction, dtype), a colour per implementation,
    a marker per shape (filled: hard, hollow: soft). Markers, not lines: several shapes share a size."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    gumbel = [b["extra_info"] | {"median": median(b)} for b in benchmarks if b["extra_info"]["suite"] == "gumbel"]
    panels = sorted({(i["direction"], i["dtype"]) for i in gumbel}, key=lambda p: (p[0] != "fwd", p[1] != "fp32"))
    if not panels:
        return
    impls = sorted({(i["device"], i["impl"]) for i in gumbel})
    colors = {impl: plt.cm.tab10(n) for n, impl in enumerate(impls)}
    shapes = sorted({i["shape_name"] for i in gumbel}, key=lambda n: shape_key({"shape_name": n}))
    markers = dict(zip(shapes, SHAPE_MARKERS, strict=False))
    ncols = 2 if len(panels) > 1 else 1
    fig, axes = plt.subplots(
        math.ceil(len(panels) / ncols),
        ncols,
        figsize=(6.5 * ncols, 4.5 * math.ceil(len(panels) / ncols)),
        squeeze=False,
        layout="constrained",
    )
    for ax, (direction, dtype) in zip(axes.flat, panels, strict=False):
        for i in gumbel:
            if (i["direction"], i["dtype"]) != (direction, dtype):
                continue
            numel, color = math.prod(i["shape"]), colors[(i["device"], i["impl"])]
            ax.scatter(
                numel,
                numel / i["median"],
                marker=markers[i["shape_name"]],
                color=color if i["mode"] == "hard" else "none",
                edgecolors=color,
                s=36,
            )
        ax.set(xscale="log", yscale="log", title=f"{direction}, {dtype}", xlabel="elements per call")
        ax.set_ylabel("elements / s")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.legend(handles=legend_handles(impls, colors, shapes, markers), loc="outside right center", fontsize=8)
    fig.suptitle("gumbel_softmax throughput (median time)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", type=Path, help="pytest-benchmark --benchmark-json output(s)")
    parser.add_argument("--out", type=Path, required=True, help="directory for benchmarks.md and benchmarks.png")
    args = parser.parse_args(argv)
    machine, benchmarks = load(args.json)
    args.out.mkdir(parents=True, exist_ok=True)
    write_markdown(machine, benchmarks, args.out / "benchmarks.md")
    write_plot(benchmarks, args.out / "benchmarks.png")
    print(f"wrote {args.out / 'benchmarks.md'} and {args.out / 'benchmarks.png'} ({len(benchmarks)} benchmarks)")


if __name__ == "__main__":
    main()
