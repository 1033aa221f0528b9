"""Every ```python block of README.md runs, so that the snippets cannot rot (shell blocks are not run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = [
    (README.read_text()[: match.start()].count("\n") + 1, match.group(1))
    for match in re.finditer(r"^```python\n(.*?)^```", README.read_text(), flags=re.MULTILINE | re.DOTALL)
]


def test_readme_has_python_blocks():
    assert BLOCKS, "no ```python block found: the pattern above no longer matches the README"


@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_python_block_runs(line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a snippet writes lands here, not in the checkout
    with torch.random.fork_rng():  # a snippet's manual_seed must not reseed the rest of the session
        # Blank lines up to the fence, so that a traceback's line numbers are the README's.
        exec(compile("\n" * line + code, str(README), "exec"), {"__name__": "__readme__"})
