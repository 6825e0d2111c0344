#!/usr/bin/env bash
# v19 (color): v16 fine-tuned with the mortar texture kind added to the painted textures (tiles and
# bricks with 0.5-2.5 px grout: test scene 13's bricks are v16's largest loss), on the re-rendered
# seed-5000 samples outside v16's validation scenes (logs/v19-views.sh); resumes.
# NAME and KINDS set the control run (KINDS=checker,stripes,blobs: v16's textures); POST=5 EXTRA=--widen grows
# the post kernel to 5x5 (its new outer offsets start at no weight); KSIZE=5 EXTRA=--widen grows every scale's kernel.
# v22-v24 pass EXTRA=--up-kernel, "--up-kernel --branch-lr 3e-3" or "--texture-hue 0.5" (models/README.md).
# v25: DATA=data/s5000-v25 EPOCHS=10 EXTRA="--texture-hue 0.5" (views: logs/v19-views.sh).
cd "$(dirname "$0")/.."
name=${NAME:-v19-color} resume=""
[ -f runs/$name/last.pt ] && resume="--resume auto"
.venv/bin/python -m training train --data ${DATA:-data/s5000-v19} --test-fraction 0 --val-fraction 0.05 --width 16 --growth 16 --depth 4 --head kernel \
 --kernel-size ${KSIZE:-3} --kernel-scales 5 --kernel-space both --post-kernel ${POST:-3} --refine-width 16 --refine-bound 0.5 --patch 128 --patches-per-image 2 --batch-size 4 \
 --w-mse 1 --w-ssim 0.1 --w-l1 1 --w-psnr 0.001 --lr ${LR:-1e-4} --warmup-steps 100 --threads ${THREADS:-2} --quiet \
 --albedo-texture ${TEXTURE:-0.3} --texture-kinds ${KINDS:-checker,stripes,blobs,mortar} --epochs ${EPOCHS:-6} \
 --inputs color --upsample transpose \
 --init models/denoiser-v16-color.onnx --seed 19 ${EXTRA:-} --out runs/$name $resume > logs/$name.log 2>&1
