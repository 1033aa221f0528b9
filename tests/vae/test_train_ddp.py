"""Two-process data-parallel training on CPU (gloo), launched with torchrun as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from gumbel_fused.vae.checkpoint import load_checkpoint

from .helpers import QUICK_TRAIN_ARGS

QUICK = [*QUICK_TRAIN_ARGS, "--seed", "5"]


def torchrun(out, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "gumbel_fused.vae",
        *QUICK,
        "--out",
        str(out),
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow  # three torchrun launches, about 20 s on 2 cores
def test_two_process_training_and_resume(tmp_path):
    straight = torchrun(tmp_path / "straight", "--epochs", "2")
    assert straight.stdout.count("test ELBO") == 2  # only rank 0 reports
    rows = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert rows[1]["step"] == 2 * 4  # 400 images, global batch 100 split over 2 ranks: 4 steps per epoch
    checkpoint = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    assert len(checkpoint["rng"]) == 2  # each rank's random streams are kept
    assert not torch.equal(checkpoint["rng"][0]["torch"], checkpoint["rng"][1]["torch"])  # ranks draw apart

    torchrun(tmp_path / "resumed", "--epochs", "1")
    torchrun(tmp_path / "resumed", "--epochs", "2", "--resume")
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    for key, tensor in checkpoint["model"].items():
        assert torch.equal(tensor, resumed["model"][key]), key
