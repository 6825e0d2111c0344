#!/usr/bin/env bash
# The seed-5000 training set (models/README.md: v6 to v16 sets), rendered again on a fresh machine:
# niced, resumable (a rerun continues; same seed, same samples), stops at --count.
cd "$(dirname "$0")/.."
exec nice -n 19 .venv/bin/python -m blender_denoise_addon generate-dataset --out data/train-s5000 --count ${COUNT:-1000} \
  --resolution 128 128 --noisy-spp 1 2 4 8 16 --clean-spp 256 --adaptive-threshold 0.01 --adaptive-min-samples 32 \
  --seed 5000 --quiet >> logs/render-s5000.log 2>&1
