"""The VAE's --estimator: it trains with each gradient estimator, and refuses what cannot work."""

from __future__ import annotations

import json

import pytest
import torch

from gumbel_fused.vae import cli, train
from gumbel_fused.vae.checkpoint import load_checkpoint, save_checkpoint
from gumbel_fused.vae.model import CategoricalVAE, resolve_gumbel_softmax

from .helpers import QUICK_TRAIN_ARGS

QUICK = [*QUICK_TRAIN_ARGS, "--anneal-every", "2", "--anneal-rate", "0.05", "--seed", "3", "--hard"]


@pytest.mark.parametrize("estimator", ["reinmax", "gumbel_rao", "gst", "plain_st"])
def test_short_run_learns_with_each_estimator(tmp_path, estimator):
    argv = [*QUICK, "--epochs", "2", "--estimator", estimator, "--rao-samples", "2", "--out", str(tmp_path)]
    assert train.main(argv) == 0
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert rows[1]["train_loss"] < rows[0]["train_loss"] and rows[1]["test_elbo"] > rows[0]["test_elbo"]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["args"]["estimator"] == estimator


def test_the_model_trains_with_the_estimators_gradient():
    # The CLI's model samples with the chosen estimator: the gradient reaching the encoder is its gradient.
    torch.manual_seed(0)
    x = torch.randint(0, 2, (8, 784)).float()
    grads = {}
    for estimator in ("st", "reinmax"):
        torch.manual_seed(1)
        model = CategoricalVAE(4, 5, [16], gumbel_softmax=resolve_gumbel_softmax("fused", estimator, 10))
        torch.manual_seed(2)
        model.loss(x, 1.0, hard=True).backward()
        grads[estimator] = model.encoder[0].weight.grad
    assert not torch.allclose(grads["st"], grads["reinmax"])
    with pytest.raises(ValueError, match="needs the fused implementation"):
        resolve_gumbel_softmax("eager", "gst")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--estimator", "reinmax"], "--estimator reinmax is a gradient of hard samples: add --hard"),
        (["--estimator", "gst", "--hard", "--impl", "eager"], "--estimator gst needs --impl fused"),
        (["--estimator", "rein"], "invalid choice: 'rein'"),
        (["--estimator", "gumbel_rao", "--hard", "--rao-samples", "0"], "must be a positive integer"),
    ],
)
def test_bad_estimator_arguments_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_resume_refuses_another_estimator_and_reads_old_checkpoints_as_st(tmp_path, capsys):
    assert train.main([*QUICK, "--epochs", "1", "--out", str(tmp_path)]) == 0
    assert train.main([*QUICK, "--epochs", "2", "--estimator", "gst", "--resume", "--out", str(tmp_path)]) == 2
    assert "--estimator st, not gst" in capsys.readouterr().err
    # A checkpoint written before --estimator existed holds neither key: it was trained with st.
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    del checkpoint["args"]["estimator"], checkpoint["args"]["rao_samples"]
    save_checkpoint(tmp_path / "checkpoint.pt", checkpoint)
    assert train.main([*QUICK, "--epochs", "2", "--resume", "--out", str(tmp_path)]) == 0


def test_help_lists_the_estimator_options():
    text = cli.build_parser().format_help()
    assert "--estimator {st,reinmax,gumbel_rao,gst,plain_st}" in text and "--rao-samples" in text
