#!/usr/bin/env bash
# v14-refine (color): v7 (color) grown by a refine branch (--refine-width 16, a bounded direct correction), fine-tuned
# on the seed-5000 set (856 scenes) with painted textures, one thread; resumes.
cd "$(dirname "$0")/.."
name=v14-refine resume=""
[ -f runs/$name/last.pt ] && resume="--resume auto"
.venv/bin/python -m training train --data data/train-s5000 --test-fraction 0 --val-fraction 0.1 --width 16 --growth 16 --depth 4 --head kernel \
 --kernel-size 3 --kernel-scales 5 --kernel-space both --post-kernel 3 --refine-width 16 --patch 128 --patches-per-image 2 --batch-size 4 \
 --w-mse 1 --w-ssim 0.1 --w-l1 1 --w-psnr 0.001 --lr 2e-4 --warmup-steps 100 --threads ${THREADS:-1} --quiet \
 --albedo-texture 0.3 --epochs ${EPOCHS:-7} \
 --inputs color --upsample transpose \
 --init models/denoiser-v7-color.onnx --seed 16 --out runs/$name $resume > logs/$name.log 2>&1
