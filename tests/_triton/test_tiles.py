"""Launch configuration of the Triton tile helpers: one case per branch of ``launch_config``."""

from __future__ import annotations

import pytest

from gumbel_fused._triton import tiles


@pytest.mark.parametrize(
    "shape, single_pass, block_r",
    [
        ((200000, 10, 1), True, 256),  # tiny rows: many rows a program
        ((4096, 1024, 1), True, 4),
        ((64, 131072, 1), False, 1),  # longer than a block: online max/sum, two passes
        ((8, 8192, 1024), False, 32),  # dVAE layout: tall tiles, chunked K
        ((1, 5, 1), True, 1),  # never more rows a tile than there are rows
    ],
)
def test_launch_config_branches(shape, single_pass, block_r):
    outer, n_cols, inner = shape
    config = tiles.launch_config(outer * inner, n_cols, inner)
    assert config["SINGLE_PASS"] is single_pass
    assert config["BLOCK_R"] == block_r
    assert config["BLOCK_K"] % 4 == 0  # chunks hold whole Philox groups
    assert config["BLOCK_R"] * config["BLOCK_K"] <= tiles.MAX_SINGLE_BLOCK
