"""Train the reference categorical VAE: ``python -m gumbel_fused.vae`` (console script ``gumbel-vae``;
``python -m gumbel_fused.train`` still works).

Multi-process data-parallel with ``torchrun --nproc_per_node N -m gumbel_fused.vae ...``
(DistributedDataParallel; gloo on CPU, nccl on GPU). Writes, under ``--out`` (rank 0 only):
metrics.csv / metrics.json, recon_epochN.png, samples_epochN.png and checkpoint.pt.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, write_metrics
from .cli import PROG, UsageError, default_threads, parse_args
from .model import CategoricalVAE, resolve_gumbel_softmax

try:  # the vae extra: without it, main() says what to install in one line instead of a traceback at import
    from torchvision.utils import save_image
    from tqdm import tqdm

    from . import data as datasets
except ModuleNotFoundError as error:
    MISSING_EXTRA: ModuleNotFoundError | None = error
else:
    MISSING_EXTRA = None

# Evaluation draws from its own fixed-seed generators, so that test metrics are comparable across
# epochs and runs and evaluating never shifts the training streams.
EVAL_SEED = 1234
# A resumed run must agree with the checkpoint on everything that shapes the weights it reaches.
MUST_MATCH = (
    "dataset",
    "seed",
    "batch_size",
    "lr",
    "tau0",
    "tau_min",
    "anneal_rate",
    "anneal_every",
    "hard",
    "estimator",
    "rao_samples",
    "latents",
    "categories",
    "hidden",
    "limit_train",
)
# What MUST_MATCH keys added since the first checkpoints meant when they were absent.
MUST_MATCH_DEFAULTS = {"estimator": "st", "rao_samples": 10}
# Without a terminal, a progress line this often (seconds): a few per epoch where an epoch is slow, none
# in a quick run, whose per-epoch summary line is progress enough.
PROGRESS_SECONDS = 30.0
# What resuming reads from checkpoint.pt: a file without all of it is not a training state.
CHECKPOINT_KEYS = {"args", "epoch", "step", "model", "optimizer", "rng", "metrics", "wall_seconds"}


def temperature(step: int, tau0: float, tau_min: float, rate: float, every: int) -> float:
    """Annealed temperature ``max(tau_min, tau0 * exp(-rate * t))`` at global step ``step``, where t is
    ``step`` rounded down to a multiple of ``every`` (Jang et al. 2017: updated every N steps).

    A pure function of the step, so that resuming needs no schedule state, and it never compounds.
    """
    return max(tau_min, tau0 * math.exp(-rate * (step // every) * every))


class Progress:
    """Progress through one epoch's batches on stderr: tqdm's bar on a terminal; elsewhere (logs, CI),
    where the bar's carriage returns would pile up, a plain line every ``PROGRESS_SECONDS``."""

    def __init__(self, batches, desc: str, enabled: bool) -> None:
        terminal = sys.stderr.isatty()
        self.bar = tqdm(batches, desc=desc, leave=False, unit="batch", disable=not (enabled and terminal))
        self.log_lines = enabled and not terminal
        self.desc, self.total, self.done = desc, len(batches), 0
        self.start = self.last = time.perf_counter()

    def __iter__(self):
        return iter(self.bar)

    def update(self, loss: float, tau: float) -> None:
        """One more batch done, with its loss and temperature."""
        self.done += 1
        self.bar.set_postfix(loss=f"{loss:.2f}", tau=f"{tau:.3f}")
        now = time.perf_counter()
        if self.log_lines and now - self.last >= PROGRESS_SECONDS:
            self.last = now
            elapsed = now - self.start
            print(
                f"{self.desc}  batch {self.done}/{self.total}  loss {loss:.2f}  tau {tau:.3f}  {elapsed:.0f} s",
                file=sys.stderr,
                flush=True,
            )


@dataclass
class Process:
    """Where this process sits: its rank among ``world`` processes and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _setup_process(device_arg: str) -> Process:
    """Join the process group when launched by torchrun (it sets WORLD_SIZE) and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_arg)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Process(rank, world, device)


def _choose_dataset(args: argparse.Namespace, process: Process) -> None:
    """Fill in ``args.dataset`` when not given: mnist if present locally, else the packaged mnist-5k."""
    if args.dataset is not None:
        return
    mnist_dir = Path(args.data_dir or datasets.DEFAULT_DATA_DIRS["mnist"])
    if datasets.mnist_available(mnist_dir):
        args.dataset = "mnist"
        return
    args.dataset = "mnist-5k"
    if process.is_main:
        print(
            f"{PROG}: MNIST not found under {mnist_dir / 'MNIST' / 'raw'}; training on the packaged mnist-5k "
            f"(pass --dataset mnist to download MNIST)",
            file=sys.stderr,
        )


def _prepare_out(out: Path) -> None:
    """Create ``out`` and check that a file can be written there, before any time is spent training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise UsageError(f"cannot write to --out {out} ({error.strerror or error}); pass a writable folder") from None


def _read_checkpoint(path: Path) -> dict:
    """The checkpoint to resume from; a file that is not one is a one-line error and stays untouched."""
    try:
        state = load_checkpoint(path)
        if not isinstance(state, dict) or not CHECKPOINT_KEYS <= state.keys():
            raise ValueError("not a gumbel-vae training state")
    except Exception as error:  # torch.load raises RuntimeError, UnpicklingError, EOFError... on a bad file
        # The first sentence only: torch appends a paragraph of advice to its zip errors.
        first_sentence = re.split(r"\n|\. ", str(error))[0]
        reason = f"{type(error).__name__}: {first_sentence}"
        raise UsageError(
            f"--resume: {path} is not a readable checkpoint ({reason}); restore a good copy to continue, "
            f"or move it away to start afresh"
        ) from None
    return state


def _restore(args, checkpoint, process, model, optimizer, data_generator) -> dict:
    """Load a checkpoint's weights, optimizer and this process's RNG streams; return its progress."""
    saved = checkpoint["args"]
    for key in MUST_MATCH:
        written = saved.get(key, MUST_MATCH_DEFAULTS.get(key))
        if written != getattr(args, key):
            raise UsageError(
                f"--resume: {args.out / 'checkpoint.pt'} was written with --{key.replace('_', '-')} "
                f"{written}, not {getattr(args, key)}; use another --out to start afresh"
            )
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if len(checkpoint["rng"]) == process.world:
        set_rng_state(checkpoint["rng"][process.rank], process.device, data_generator)
    else:
        # Another process count splits the data differently anyway: continue, but not bit for bit.
        if process.is_main:
            print(
                f"{PROG}: checkpoint written by {len(checkpoint['rng'])} process(es), resuming with "
                f"{process.world}: random streams are reseeded",
                file=sys.stderr,
            )
        torch.manual_seed(args.seed + 1000 * checkpoint["epoch"] + process.rank)
        data_generator.manual_seed(args.seed + 1000 * checkpoint["epoch"] + process.rank + 1)
    return checkpoint


def _evaluate(model: CategoricalVAE, test_x: torch.Tensor, args, out: Path | None, epoch: int) -> dict:
    """Test ELBO (one exact categorical sample per image, analytic KL), importance-weighted -log p(x)
    on the first ``--iw-subset`` images, and the epoch's images when ``out`` is given."""
    model.eval()
    device = test_x.device
    generator = torch.Generator(device).manual_seed(EVAL_SEED)
    parts = [model.elbo_discrete(batch, generator) for batch in test_x.split(500)]
    elbo = torch.cat([p.elbo for p in parts]).mean().item()
    log_likelihood = torch.cat([p.log_likelihood for p in parts]).mean().item()
    kl = torch.cat([p.kl for p in parts]).mean().item()
    subset = test_x[: args.iw_subset]
    log_px = torch.cat([model.log_marginal_iw(batch, args.iw_samples, generator) for batch in subset.split(100)])
    if out is not None:
        real = test_x[:32]
        recon = model.reconstruct(real)
        # Rows alternate 16 real test digits and their reconstructions.
        grid = torch.cat([real[:16], recon[:16], real[16:], recon[16:]])
        save_image(grid.view(-1, 1, 28, 28).cpu(), out / f"recon_epoch{epoch}.png", nrow=16)
        samples = model.sample(64, generator)
        save_image(samples.view(-1, 1, 28, 28).cpu(), out / f"samples_epoch{epoch}.png", nrow=8)
    model.train()
    return {
        "test_elbo": elbo,
        "test_log_likelihood": log_likelihood,
        "test_kl": kl,
        "test_nll_iw": -log_px.mean().item(),
    }


def run(args: argparse.Namespace, process: Process) -> None:
    """Train for ``args.epochs`` epochs, evaluating, writing outputs and checkpointing after each."""
    if args.batch_size % process.world:
        raise UsageError(f"--batch-size {args.batch_size} must be a multiple of the {process.world} processes")
    out, device = args.out, process.device
    checkpoint_path = out / "checkpoint.pt"
    if not args.resume and checkpoint_path.exists():
        # A fresh run would replace another run's checkpoint after its first epoch: never lose it silently.
        raise UsageError(
            f"--out {out} already holds a run's checkpoint.pt; pass --resume to continue it, or choose another "
            "--out (or move that folder away) to start afresh"
        )
    if process.is_main:
        _prepare_out(out)
    _choose_dataset(args, process)
    split = datasets.load(args.dataset, args.data_dir).limit(args.limit_train, args.limit_test)

    torch.manual_seed(args.seed)  # identical initial weights on every rank
    model = CategoricalVAE(
        args.latents,
        args.categories,
        args.hidden,
        gumbel_softmax=resolve_gumbel_softmax(args.impl, args.estimator, args.rao_samples),
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    # Each rank draws its own Gumbel noise and binarization; the data order comes from data_generator
    # on one process and from the DistributedSampler (seeded by --seed and the epoch) on several.
    torch.manual_seed(args.seed + process.rank)
    data_generator = torch.Generator().manual_seed(args.seed + 1_000_003 * (process.rank + 1))
    epoch, step, metrics, wall_before = 0, 0, [], 0.0
    if args.resume and checkpoint_path.exists():
        state = _restore(args, _read_checkpoint(checkpoint_path), process, model, optimizer, data_generator)
        epoch, step, metrics, wall_before = state["epoch"], state["step"], state["metrics"], state["wall_seconds"]
        if process.is_main:
            print(f"{PROG}: resuming from {checkpoint_path} after epoch {epoch} (step {step})", file=sys.stderr)
    elif args.resume and process.is_main:
        print(f"{PROG}: no checkpoint at {checkpoint_path}; starting from scratch", file=sys.stderr)
    saved_epoch = epoch  # the epoch checkpoint.pt holds, named if a later write fails

    net = DistributedDataParallel(model) if process.world > 1 else model
    sampler = (
        DistributedSampler(range(len(split.train_images)), process.world, process.rank, seed=args.seed)
        if process.world > 1
        else None
    )
    # The test set is binarized once, with a fixed generator: every epoch is scored on the same bits.
    test_x = datasets.binarize(split.test_images, torch.Generator().manual_seed(EVAL_SEED)).to(device)
    local_batch = args.batch_size // process.world
    started = time.perf_counter()

    while epoch < args.epochs:
        epoch_start = time.perf_counter()
        if sampler is not None:
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler))
        else:
            order = torch.randperm(len(split.train_images), generator=data_generator)
        batches = order.split(local_batch)
        loss_sum = torch.zeros(2, dtype=torch.float64)  # (sum of per-image losses, images)
        progress = Progress(batches, f"epoch {epoch + 1}/{args.epochs}", enabled=process.is_main)
        for index in progress:
            tau = temperature(step, args.tau0, args.tau_min, args.anneal_rate, args.anneal_every)
            x = datasets.binarize(split.train_images[index], data_generator).to(device)
            loss = -net(x, tau, args.hard).elbo.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += torch.tensor([loss.item() * len(index), len(index)], dtype=torch.float64)
            step += 1
            progress.update(loss.item(), tau)
        if process.world > 1:
            dist.all_reduce(loss_sum)
        train_seconds = time.perf_counter() - epoch_start
        epoch += 1
        rngs = [rng_state(device, data_generator)]
        if process.world > 1:
            rngs = [None] * process.world
            dist.all_gather_object(rngs, rng_state(device, data_generator))
        if process.is_main:
            row = {
                "epoch": epoch,
                "step": step,
                "tau": temperature(step - 1, args.tau0, args.tau_min, args.anneal_rate, args.anneal_every),
                "train_loss": (loss_sum[0] / loss_sum[1]).item(),
            }
            try:  # a full disk or a folder gone read-only: one line, and the last checkpoint stays whole
                row.update(_evaluate(model, test_x, args, out, epoch))
                epoch_seconds = time.perf_counter() - epoch_start
                row.update(
                    samples_per_s=loss_sum[1].item() / train_seconds,
                    epoch_seconds=epoch_seconds,
                    wall_seconds=wall_before + time.perf_counter() - started,
                )
                metrics.append(row)
                write_metrics(out, metrics)
                save_checkpoint(
                    checkpoint_path,
                    {
                        "version": 1,
                        "args": vars(args),
                        "epoch": epoch,
                        "step": step,
                        "tau": row["tau"],
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "rng": rngs,
                        "metrics": metrics,
                        "wall_seconds": row["wall_seconds"],
                    },
                )
            except OSError as error:
                kept = f"{checkpoint_path} still holds epoch {saved_epoch}" if saved_epoch else "nothing was saved"
                raise UsageError(
                    f"cannot write to --out {out} ({error.strerror or error}); {kept}: "
                    f"free space or fix the folder, then run again with --resume"
                ) from None
            saved_epoch = epoch
            print(
                f"epoch {epoch}/{args.epochs}  step {step}  tau {row['tau']:.3f}  train loss {row['train_loss']:.2f}"
                f"  test ELBO {row['test_elbo']:.2f}  test -log p(x) {row['test_nll_iw']:.2f} (k={args.iw_samples})"
                f"  {row['samples_per_s']:.0f} samples/s  {epoch_seconds:.1f} s",
                flush=True,
            )
        if process.world > 1:
            dist.barrier()  # the other ranks wait while rank 0 evaluates and writes


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m gumbel_fused.vae`` and ``gumbel-vae``; returns the exit status."""
    if MISSING_EXTRA is not None:
        install = 'pip install "gumbel-fused[vae]"'
        print(f"{PROG}: error: the VAE needs its extra dependencies ({MISSING_EXTRA}): {install}", file=sys.stderr)
        return 1
    args = parse_args(argv)
    torch.set_num_threads(args.threads or default_threads())
    process = _setup_process(args.device)
    try:
        run(args, process)
    except (datasets.DatasetNotFound, UsageError) as error:
        if process.is_main:
            print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
