"""The command line of ``gumbel-vae``: its options, their validation and its help text."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import torch

from ..reference.estimators import ESTIMATORS
from .model import IMPLEMENTATIONS

PROG = "gumbel-vae"


class UsageError(Exception):
    """A problem the user can fix (arguments, files), reported in one line with exit status 2 and no traceback."""


def default_threads() -> int:
    """CPU threads when --threads is not given: ``$OMP_NUM_THREADS`` if it is a positive integer, else 1."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def _typed(kind: type, low: float, inclusive: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if not (value >= low if inclusive else value > low) or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


positive_int = _typed(int, 1, True, "a positive integer")
nonnegative_float = _typed(float, 0.0, True, "a finite number >= 0")
positive_float = _typed(float, 0.0, False, "a finite number > 0")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where X means something: options whose default is None say what they
    do when absent in their own words, and on/off flags are off unless given."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The command line; every option has a help line."""
    # Imported here, not at the top: data needs the vae extra, whose absence main() reports before
    # any parser is built.
    from . import data as datasets

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train the reference categorical VAE (Jang et al. 2017) with a Gumbel-softmax.",
        epilog="Writes metrics.csv, metrics.json, recon_epochN.png, samples_epochN.png and checkpoint.pt under "
        "--out. Data-parallel on N processes: torchrun --nproc_per_node N -m gumbel_fused.vae [options].",
        formatter_class=_HelpFormatter,
    )
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=positive_int, default=10, help="total epochs (a resumed run continues to it)")
    train.add_argument("--batch-size", type=positive_int, default=100, help="global batch size (split over processes)")
    train.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    train.add_argument("--tau0", type=positive_float, default=1.0, help="initial Gumbel-softmax temperature")
    train.add_argument("--tau-min", type=positive_float, default=0.5, help="temperature floor")
    train.add_argument("--anneal-rate", type=nonnegative_float, default=1e-4, help="r in tau0 * exp(-r * step)")
    train.add_argument("--anneal-every", type=positive_int, default=500, help="update the temperature every N steps")
    train.add_argument("--hard", action="store_true", help="straight-through one-hot samples in training")
    train.add_argument(
        "--impl",
        choices=IMPLEMENTATIONS,
        default="fused",
        help="Gumbel-softmax: this library's fused op, torch's eager one, or torch.compile of it",
    )
    train.add_argument(
        "--estimator",
        choices=ESTIMATORS,
        default="st",
        help="gradient of the hard sample (--impl fused; all but st need --hard): straight-through "
        "Gumbel-softmax, ReinMax, Gumbel-Rao, gapped straight-through or plain straight-through",
    )
    train.add_argument(
        "--rao-samples", type=positive_int, default=10, help="conditional noise draws of --estimator gumbel_rao"
    )
    train.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    train.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads per process (default: $OMP_NUM_THREADS if set, else 1; this model is too small to "
        "gain from a second thread, and extra threads stall when other work shares the cores)",
    )
    train.add_argument("--seed", type=int, default=0, help="seed of the weights, noise and data order")
    model = parser.add_argument_group("model")
    model.add_argument("--latents", type=positive_int, default=20, help="number of categorical latents")
    model.add_argument("--categories", type=positive_int, default=10, help="categories per latent")
    model.add_argument(
        "--hidden",
        type=positive_int,
        nargs="+",
        default=[512, 256],
        help="encoder hidden sizes (the decoder mirrors them)",
    )
    data = parser.add_argument_group("data and outputs")
    data.add_argument(
        "--dataset",
        choices=datasets.DATASETS,
        default=None,
        help="what to train on (default: mnist if its files are under --data-dir, else the packaged mnist-5k)",
    )
    data.add_argument(
        "--data-dir",
        default=None,
        help=f"dataset folder (default: {datasets.DEFAULT_DATA_DIRS['mnist']} for mnist, "
        f"{datasets.DEFAULT_DATA_DIRS['fashion-mnist']} for fashion-mnist)",
    )
    data.add_argument("--out", type=Path, default=Path("runs/vae"), help="output folder")
    data.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    evaluation = parser.add_argument_group("evaluation and quick runs")
    evaluation.add_argument("--iw-samples", type=positive_int, default=100, help="k of the -log p(x) estimate")
    evaluation.add_argument(
        "--iw-subset", type=positive_int, default=500, help="test images used for the -log p(x) estimate"
    )
    evaluation.add_argument(
        "--limit-train", type=positive_int, default=None, help="use the first N training images (default: all)"
    )
    evaluation.add_argument(
        "--limit-test", type=positive_int, default=None, help="use the first N test images (default: all)"
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and check ``argv``; a bad argument exits with argparse's usage line and status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.tau_min > args.tau0:
        parser.error(f"--tau-min {args.tau_min} is above --tau0 {args.tau0}")
    if args.estimator != "st" and not args.hard:
        parser.error(f"--estimator {args.estimator} is a gradient of hard samples: add --hard")
    if args.estimator != "st" and args.impl != "fused":
        parser.error(f"--estimator {args.estimator} needs --impl fused (torch's Gumbel-softmax has only st)")
    if args.device != "auto":
        try:
            device = torch.device(args.device)
        except RuntimeError:
            parser.error(f"--device {args.device!r} is not a device (try cpu, cuda or cuda:1)")
        if device.type == "cuda" and not torch.cuda.is_available():
            parser.error("--device cuda, but CUDA is not available here")
    return args
