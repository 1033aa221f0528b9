"""``python -m gumbel_fused.vae``: the training CLI, as ``gumbel-vae``."""

import sys

from .train import main

sys.exit(main())
