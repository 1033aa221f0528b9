"""Atomic writes: the mode a plain open() gives, and the previous file kept when a write fails."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from gumbel_fused.vae import checkpoint
from gumbel_fused.vae.checkpoint import write_atomic


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_write_atomic_honours_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_atomic(tmp_path / "atomic", b"data")
        (tmp_path / "plain").write_bytes(b"data")
    finally:
        os.umask(previous)
    assert mode(tmp_path / "atomic") == mode(tmp_path / "plain") == 0o666 & ~umask


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pt"
    write_atomic(target, b"good")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left behind
