#!/usr/bin/env bash
# v15: v13 (aux) fine-tuned at lr 2e-4 (as v14 color was) with --albedo-texture 0.3 on the seed-5000 set grown to 893 scenes, two threads; resumes.
cd "$(dirname "$0")/.."
name=v15-aux resume=""
[ -f runs/$name/last.pt ] && resume="--resume auto"
.venv/bin/python -m training train --data data/train-s5000 --test-fraction 0 --val-fraction 0.1 --width 16 --growth 16 --depth 4 --head kernel \
 --kernel-size 3 --kernel-scales 5 --kernel-space both --post-kernel 3 --patch 128 --patches-per-image 2 --batch-size 4 \
 --w-mse 1 --w-ssim 0.1 --w-l1 1 --w-psnr 0.001 --lr 2e-4 --warmup-steps 100 --threads 2 --quiet \
 --albedo-texture 0.3 --epochs ${EPOCHS:-4} \
 --inputs color,albedo,normal --upsample nearest --demodulate --picker-width 8 \
 --init models/denoiser-v13-color-albedo-normal.onnx --seed 18 --out runs/$name $resume > logs/$name.log 2>&1
