"""Train the reference VAE with every gradient estimator, several seeds each, and tabulate the test metrics.

    python benchmarks/vae/estimator_table.py                      # the README's table (about an hour on one core)
    python benchmarks/vae/estimator_table.py --datasets mnist-5k --seeds 0 --epochs 2   # a quick look

Each run is ``python -m gumbel_fused.vae --hard --estimator E --seed S ...`` in its own process, under
``--runs/DATASET/E/seedS``, started with ``--resume``: an interrupted table picks up where it stopped, and a
finished run (its metrics.json reaches the last epoch) is read, not trained again. The table, mean and
standard deviation over seeds of the last epoch's test ELBO and -log p(x), goes to ``--results`` as
``vae-estimators.json`` and ``vae-estimators.md``.

The temperature schedule is annealed fast enough to reach its floor well before the end: with the defaults
below, tau = max(0.5, exp(-1e-3 * step)) updated every 100 steps reaches 0.5 at step 700, and a run is
``--epochs`` times 45 steps on mnist-5k (4,500 training images) and 100 on the Fashion-MNIST subset.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from gumbel_fused.reference.estimators import ESTIMATORS

# Per dataset: the epochs and the CLI options of every run (the Fashion-MNIST training set is cut to its
# first 10,000 images to keep the table within a CPU budget; the test set is whole).
DATASETS = {
    "mnist-5k": {"epochs": 30, "options": []},
    "fashion-mnist": {"epochs": 15, "options": ["--limit-train", "10000"]},
}
SCHEDULE = ["--anneal-rate", "1e-3", "--anneal-every", "100", "--tau-min", "0.5"]
METRICS = {"test_elbo": "test ELBO", "test_nll_iw": "test -log p(x)"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    parser.add_argument("--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="epochs of every run (default: per dataset, see DATASETS)")
    parser.add_argument("--runs", type=Path, default=Path("runs/estimators"), help="run folders")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"), help="table folder")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more options for every run")
    return parser.parse_args(argv)


def finished_metrics(folder: Path, epochs: int) -> dict | None:
    """The last epoch's metrics of a run that reached ``epochs``, else None."""
    try:
        rows = json.loads((folder / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return rows[-1] if rows and rows[-1]["epoch"] >= epochs else None


def run(dataset: str, estimator: str, seed: int, epochs: int, folder: Path, extra: list[str]) -> dict:
    """Train one run to ``epochs`` (resuming it if it was cut short); its last epoch's metrics."""
    done = finished_metrics(folder, epochs)
    if done is not None:
        return done
    command = [
        sys.executable, "-m", "gumbel_fused.vae", "--hard", "--estimator", estimator, "--seed", str(seed),
        "--dataset", dataset, "--epochs", str(epochs), "--out", str(folder), "--resume",
        *SCHEDULE, *DATASETS[dataset]["options"], *extra,
    ]  # fmt: skip
    print(f"== {dataset} {estimator} seed {seed}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True)
    done = finished_metrics(folder, epochs)
    if done is None:
        raise RuntimeError(f"{folder}: the run ended before epoch {epochs}")
    return done


def summarize(rows: list[dict]) -> dict:
    """Mean and (sample) standard deviation over seeds of each metric, and of the final tau and speed."""
    summary = {"seeds": len(rows), "tau": rows[0]["tau"]}
    for key in (*METRICS, "samples_per_s"):
        values = [row[key] for row in rows]
        summary[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return summary


def markdown(table: dict, epochs: dict) -> str:
    """The README's table: one line per dataset and estimator, mean +- std over seeds."""
    lines = [
        "| dataset | epochs | estimator | " + " | ".join(METRICS.values()) + " | samples/s |",
        "|---|---|---|" + "---|" * (len(METRICS) + 1),
    ]
    for dataset, estimators in table.items():
        for estimator, s in estimators.items():
            cells = [f"{s[key]['mean']:.1f} ± {s[key]['std']:.1f}" for key in METRICS]
            speed = f"{s['samples_per_s']['mean']:.0f}"
            lines.append(f"| {dataset} | {epochs[dataset]} | {estimator} | " + " | ".join(cells) + f" | {speed} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extra = [a for a in args.extra if a != "--"]
    table, epochs = {}, {}
    for dataset in args.datasets:
        epochs[dataset] = args.epochs or DATASETS[dataset]["epochs"]
        table[dataset] = {}
        for estimator in args.estimators:
            rows = [
                run(dataset, estimator, seed, epochs[dataset], args.runs / dataset / estimator / f"seed{seed}", extra)
                for seed in args.seeds
            ]
            table[dataset][estimator] = summarize(rows)
    args.results.mkdir(parents=True, exist_ok=True)
    settings = {"seeds": args.seeds, "epochs": epochs, "schedule": SCHEDULE, "extra": extra}
    (args.results / "vae-estimators.json").write_text(json.dumps({"settings": settings, "table": table}, indent=1))
    text = markdown(table, epochs)
    (args.results / "vae-estimators.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
