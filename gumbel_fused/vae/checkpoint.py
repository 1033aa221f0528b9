"""Atomic file writes and the RNG bookkeeping that makes a resumed training run bit-exact."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from pathlib import Path
from typing import Any

import torch


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``, so that a
    run killed mid-write leaves the previous file intact rather than a truncated one.

    The file gets the mode a plain ``open()`` would give it, 0666 less the umask: ``mkstemp`` would
    make it 0600 whatever the umask.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` the training state atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The training state saved by :func:`save_checkpoint` (tensors on the CPU)."""
    # weights_only=False: the state holds plain Python metrics and argument values besides tensors,
    # and the file is one this program wrote.
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state(device: torch.device, data_generator: torch.Generator) -> dict[str, Any]:
    """This process's random streams: torch's CPU generator (model noise, Gumbel seeds), CUDA's
    if training there, and the generator that orders and binarizes the data."""
    state = {"torch": torch.get_rng_state(), "data": data_generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device, data_generator: torch.Generator) -> None:
    """Restore the streams captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    data_generator.set_state(state["data"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def write_metrics(out: Path, rows: list[dict[str, Any]]) -> None:
    """``metrics.csv`` and ``metrics.json``: one row per completed epoch, rewritten in full each
    epoch so that a resumed run's files hold the whole history."""
    if not rows:
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "metrics.csv", text.getvalue().encode())
    write_atomic(out / "metrics.json", (json.dumps(rows, indent=1) + "\n").encode())
