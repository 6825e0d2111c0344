#!/usr/bin/env bash
# v16a (color): v14 color with the refine branch's bound raised to 0.5 (--refine-bound; its output layer is
# rescaled on --init so it starts as v14), fine-tuned on the seed-5000 set (910 scenes), painted textures 0.3; resumes.
# NAME, TEXTURE and EXTRA (more flags) set another run of the same recipe (logs/v16b.sh, logs/v17.sh).
cd "$(dirname "$0")/.."
name=${NAME:-v16a-color} resume=""
[ -f runs/$name/last.pt ] && resume="--resume auto"
.venv/bin/python -m training train --data data/train-s5000 --test-fraction 0 --val-fraction 0.1 --width 16 --growth 16 --depth 4 --head kernel \
 --kernel-size 3 --kernel-scales 5 --kernel-space both --post-kernel 3 --refine-width 16 --refine-bound 0.5 --patch 128 --patches-per-image 2 --batch-size 4 \
 --w-mse 1 --w-ssim 0.1 --w-l1 1 --w-psnr 0.001 --lr 2e-4 --warmup-steps 100 --threads ${THREADS:-1} --quiet \
 --albedo-texture ${TEXTURE:-0.3} --epochs ${EPOCHS:-4} \
 --inputs color --upsample transpose \
 --init models/denoiser-v14-color.onnx --seed 17 ${EXTRA:-} --out runs/$name $resume > logs/$name.log 2>&1
