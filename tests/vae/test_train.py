"""The training CLI: a short run learns, resuming is bit-exact, errors are one clear line."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import subprocess
import sys

import pytest
import torch

from gumbel_fused.vae import cli, train
from gumbel_fused.vae.checkpoint import load_checkpoint
from gumbel_fused.vae.train import temperature

from .helpers import QUICK_TRAIN_ARGS

# Annealing every 2 steps, so that short runs exercise the schedule.
QUICK = [*QUICK_TRAIN_ARGS, "--anneal-every", "2", "--anneal-rate", "0.05", "--seed", "3"]


def run_main(out, *extra: str) -> int:
    return train.main([*QUICK, "--out", str(out), *extra])


def test_temperature_schedule():
    kwargs = dict(tau0=1.0, tau_min=0.5, rate=1e-4, every=500)
    assert temperature(0, **kwargs) == temperature(499, **kwargs) == 1.0
    assert temperature(500, **kwargs) == pytest.approx(math.exp(-0.05))
    # A pure function of the step (no compounding): step 1000 is exp(-r * 1000), not exp(-r * 500) ** 3.
    assert temperature(1000, **kwargs) == pytest.approx(math.exp(-0.1))
    assert temperature(10**6, **kwargs) == 0.5
    taus = [temperature(s, **kwargs) for s in range(0, 20000, 100)]
    assert taus == sorted(taus, reverse=True)


def test_short_run_learns_and_writes_its_outputs(tmp_path, capsys):
    assert run_main(tmp_path, "--epochs", "3") == 0
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    losses = [row["train_loss"] for row in rows]
    assert losses[0] > losses[1] > losses[2]
    assert rows[-1]["test_elbo"] > rows[0]["test_elbo"]
    assert all(row["test_nll_iw"] <= -row["test_elbo"] + 1 for row in rows)  # IW: the tighter bound
    assert rows[-1]["tau"] < rows[0]["tau"] <= 1.0  # annealed
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("train_loss", "test_elbo", "test_nll_iw", "tau", "samples_per_s", "wall_seconds"):
        assert column in header
    for epoch in (1, 2, 3):
        assert (tmp_path / f"recon_epoch{epoch}.png").exists() and (tmp_path / f"samples_epoch{epoch}.png").exists()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 3
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files behind
    # Atomic writes (metrics, checkpoint) get the mode torchvision's plain open() gives the PNGs.
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in tmp_path.iterdir()}
    assert len(set(modes.values())) == 1, modes
    assert capsys.readouterr().out.count("test ELBO") == 3  # one summary line per epoch


def test_progress_lines_without_a_terminal(tmp_path, capsys, monkeypatch):
    """stderr is not a terminal under pytest: progress comes as plain lines, at PROGRESS_SECONDS."""
    assert run_main(tmp_path / "quick", "--epochs", "1") == 0
    assert "batch" not in capsys.readouterr().err  # a quick run stays within one interval: no lines
    monkeypatch.setattr(train, "PROGRESS_SECONDS", 0.0)
    assert run_main(tmp_path / "logged", "--epochs", "1") == 0
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("  ")[:2] for line in lines] == [["epoch 1/1", f"batch {i}/4"] for i in range(1, 5)]
    assert all("\r" not in line and " loss " in line and " tau " in line for line in lines)


def assert_same_training_state(a, b):
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for key, state in a["optimizer"]["state"].items():
        for name, tensor in state.items():
            assert torch.equal(tensor, b["optimizer"]["state"][key][name]), (key, name)
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"]
    assert [r["train_loss"] for r in a["metrics"]] == [r["train_loss"] for r in b["metrics"]]
    assert [r["test_elbo"] for r in a["metrics"]] == [r["test_elbo"] for r in b["metrics"]]


@pytest.mark.parametrize("impl", ["fused", "eager"])
def test_resume_is_bit_exact(tmp_path, impl):
    assert run_main(tmp_path / "straight", "--epochs", "3", "--impl", impl) == 0
    assert run_main(tmp_path / "resumed", "--epochs", "2", "--impl", impl) == 0
    assert run_main(tmp_path / "resumed", "--epochs", "3", "--impl", impl, "--resume") == 0
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert_same_training_state(straight, resumed)
    assert len(json.loads((tmp_path / "resumed" / "metrics.json").read_text())) == 3


def test_resume_after_a_crash_mid_epoch(tmp_path, monkeypatch):
    """A run killed during epoch 3 resumes from the epoch-2 checkpoint and ends as if never stopped."""
    assert run_main(tmp_path / "straight", "--epochs", "3") == 0
    real_binarize, calls = train.datasets.binarize, []

    def crash_in_epoch_3(images, generator):
        calls.append(1)
        if len(calls) == 1 + 2 * 4 + 2:  # the test set once, then 4 batches per epoch: 2nd batch of epoch 3
            raise KeyboardInterrupt
        return real_binarize(images, generator)

    monkeypatch.setattr(train.datasets, "binarize", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run_main(tmp_path / "crashed", "--epochs", "3")
    monkeypatch.setattr(train.datasets, "binarize", real_binarize)
    assert load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")["epoch"] == 2
    assert run_main(tmp_path / "crashed", "--epochs", "3", "--resume") == 0
    assert_same_training_state(
        load_checkpoint(tmp_path / "straight" / "checkpoint.pt"),
        load_checkpoint(tmp_path / "crashed" / "checkpoint.pt"),
    )


@pytest.mark.parametrize(
    "argv, omp_num_threads, expected",
    [([], None, 1), ([], "2", 2), (["--threads", "2"], "1", 2), (["--threads", "1"], None, 1)],
)
def test_threads(tmp_path, monkeypatch, argv, omp_num_threads, expected):
    """--threads, else $OMP_NUM_THREADS, else 1: the thread count training runs with."""
    if omp_num_threads is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp_num_threads)
    seen, before = [], torch.get_num_threads()
    monkeypatch.setattr(train, "run", lambda args, process: seen.append(torch.get_num_threads()))
    try:
        assert run_main(tmp_path, *argv) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == [expected]


def test_resume_refuses_other_settings(tmp_path, capsys):
    assert run_main(tmp_path, "--epochs", "1") == 0
    assert run_main(tmp_path, "--epochs", "2", "--resume", "--lr", "0.01") == 2
    assert "--lr" in capsys.readouterr().err


def one_line_error(capsys) -> str:
    """The CLI's error output, asserted to be one line."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_fresh_run_never_replaces_another_runs_checkpoint(tmp_path, capsys):
    assert run_main(tmp_path, "--epochs", "1") == 0
    before = (tmp_path / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert run_main(tmp_path, "--epochs", "1", "--seed", "4") == 2
    line = one_line_error(capsys)
    assert "already holds a run's checkpoint.pt" in line and "--resume" in line
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_unwritable_out_is_one_line_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "out"  # below a regular file: unwritable whoever runs the test, root included
    assert run_main(out, "--epochs", "1") == 2
    line = one_line_error(capsys)
    assert line.startswith("gumbel-vae: error: cannot write to --out") and str(out) in line and "writable" in line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_one_line(tmp_path, capsys):
    tmp_path.chmod(0o500)
    try:
        assert run_main(tmp_path / "out", "--epochs", "1") == 2
    finally:
        tmp_path.chmod(0o700)
    assert "cannot write to --out" in one_line_error(capsys)


def test_failed_write_mid_run_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    """A write that fails in epoch 2 (disk full) is one line, and checkpoint.pt still holds epoch 1."""
    real_save, calls = train.save_checkpoint, []

    def disk_full_on_second_call(path, state):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_save(path, state)

    monkeypatch.setattr(train, "save_checkpoint", disk_full_on_second_call)
    assert run_main(tmp_path, "--epochs", "3") == 2
    line = one_line_error(capsys)
    assert "No space left on device" in line and "still holds epoch 1" in line and "--resume" in line
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    assert run_main(tmp_path, "--epochs", "3", "--resume") == 0


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not-a-training-state"])
def test_resume_from_a_corrupt_checkpoint_is_one_line_and_keeps_the_file(tmp_path, capsys, damage):
    assert run_main(tmp_path, "--epochs", "1") == 0
    path = tmp_path / "checkpoint.pt"
    if damage == "truncated":  # as a copy cut short would leave it
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    before, metrics = path.read_bytes(), (tmp_path / "metrics.json").read_bytes()
    capsys.readouterr()
    assert run_main(tmp_path, "--epochs", "2", "--resume") == 2
    line = one_line_error(capsys)
    assert f"{path} is not a readable checkpoint" in line and "restore a good copy" in line
    assert path.read_bytes() == before and (tmp_path / "metrics.json").read_bytes() == metrics


@pytest.mark.parametrize(
    "argv",
    [
        ["--epochs", "-1"],
        ["--epochs", "0"],
        ["--tau0", "0"],
        ["--tau0", "nan"],
        ["--batch-size", "x"],
        ["--lr", "-1e-3"],
        ["--tau0", "0.4", "--tau-min", "0.5"],
        ["--impl", "cuda"],
        ["--dataset", "cifar"],
        ["--device", "tpu0"],
    ],
)
def test_bad_arguments_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    assert "usage: gumbel-vae" in capsys.readouterr().err


def test_missing_dataset_is_one_line_without_traceback(tmp_path):
    missing = tmp_path / "nowhere"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gumbel_fused.vae",
            "--dataset",
            "fashion-mnist",
            "--data-dir",
            str(missing),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "--dataset mnist-5k" in lines[0]


@pytest.mark.parametrize("module", ["gumbel_fused.vae", "gumbel_fused.train"])  # the second: the old name
def test_module_entry_points(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: gumbel-vae")


def test_missing_vae_extra_is_one_line_naming_the_install():
    """Without tqdm (one of the vae extra's packages) the CLI says what to install, no traceback."""
    code = "import runpy, sys; sys.modules['tqdm'] = None; runpy.run_module('gumbel_fused.vae', run_name='__main__')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "tqdm" in lines[0] and 'pip install "gumbel-fused[vae]"' in lines[0], result.stderr


def test_default_dataset_falls_back_to_mnist_5k(tmp_path, capsys):
    assert (
        train.main(
            [
                "--data-dir",
                str(tmp_path),
                "--out",
                str(tmp_path / "out"),
                "--epochs",
                "1",
                "--limit-train",
                "100",
                "--limit-test",
                "50",
                "--iw-samples",
                "2",
                "--iw-subset",
                "10",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "mnist-5k" in err and len(err.strip().splitlines()) == 1
    assert load_checkpoint(tmp_path / "out" / "checkpoint.pt")["args"]["dataset"] == "mnist-5k"


def test_explicit_mnist_5k_prints_no_mnist_note(tmp_path, capsys):
    """The note about MNIST's absence is for a default run only; --dataset mnist-5k asked for it."""
    assert run_main(tmp_path / "out", "--epochs", "1", "--data-dir", str(tmp_path)) == 0  # no MNIST there
    assert capsys.readouterr().err == ""


def test_help_lists_every_option():
    text = cli.build_parser().format_help()
    for option in (
        "--epochs",
        "--batch-size",
        "--lr",
        "--tau0",
        "--tau-min",
        "--anneal-rate",
        "--anneal-every",
        "--hard",
        "--impl",
        "--device",
        "--seed",
        "--dataset",
        "--data-dir",
        "--out",
        "--resume",
        "--limit-train",
        "--limit-test",
        "--threads",
    ):
        assert option in text


def test_help_reads_as_plain_text():
    text = cli.build_parser().format_help()
    assert "``" not in text  # no reStructuredText markup from a docstring
    assert "(default: None)" not in text and "(default: False)" not in text
    # Each option states its default once: --dataset and --data-dir describe theirs in words.
    for block in re.split(r"\n  (?=-)", text):
        assert block.count("default") <= 1, block
    assert "(default: mnist if its files are under --data-dir" in " ".join(text.split())
