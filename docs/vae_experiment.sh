#!/usr/bin/env bash
# The fused-vs-eager comparison reported in the README: 10 epochs, 3 seeds, default settings, CPU,
# one run at a time (so that samples/s are not shared between runs). Fashion-MNIST trains on the
# first 10,000 of its 60,000 training images (--limit-train 10000) to fit a 2-core machine; it is
# scored on its full official 10,000-image test set. Results: runs/exp/*/metrics.json.
# The reported numbers ran with OMP_NUM_THREADS=1 (other jobs shared the 2 cores; 2 OpenMP threads on a
# busy machine ran 10-30x slower), which is now also the CLI's default (--threads). docs/vae_samples.png:
# 16 test images, their reconstructions and 32 prior samples from mnist-5k-fused-0 (top) and
# fashion-mnist-fused-0 (bottom). docs/vae_epochs.png and the README's epochs table come from one longer run,
# python -m gumbel_fused.vae --dataset mnist-5k --epochs 60 (defaults otherwise): its samples_epochN.png
# for N = 10, 20, 30, 40, 60 side by side. Every run passes --resume (a fresh start where its folder has no
# checkpoint): running the script again continues an interrupted run and leaves a finished one as it is.
set -euo pipefail
datasets=${DATASETS:-mnist-5k fashion-mnist}
for dataset in $datasets; do
  limit=()
  [[ $dataset == fashion-mnist ]] && limit=(--limit-train 10000)
  for seed in 0 1 2; do
    for impl in fused eager; do  # interleaved, so that a slow patch of the machine hits both
      python -m gumbel_fused.vae --dataset "$dataset" --impl "$impl" --seed "$seed" --epochs 10 \
        --device cpu "${limit[@]}" --out "runs/exp/$dataset-$impl-$seed" --resume "$@"
    done
  done
done
