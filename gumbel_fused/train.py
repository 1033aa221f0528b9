"""``python -m gumbel_fused.train``, kept working after the training CLI moved to ``gumbel_fused.vae.train``."""

import sys

from .vae.train import main

if __name__ == "__main__":
    sys.exit(main())
