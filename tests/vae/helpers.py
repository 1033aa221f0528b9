"""Helpers of the VAE tests."""

# Training CLI arguments for tests: a few hundred mnist-5k digits and a cheap evaluation, so that an
# epoch takes a fraction of a second.
QUICK_TRAIN_ARGS = [
    "--dataset", "mnist-5k", "--limit-train", "400", "--limit-test", "100", "--iw-samples", "5", "--iw-subset", "100",
]  # fmt: skip
