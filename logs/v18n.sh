#!/usr/bin/env bash
# v18n (color): v16 color converted to nearest-neighbour upsampling (--widen --upsample nearest drops the
# transposed convs: about 20 % less network time at 1080p), fine-tuned on the seed-5000 set at 910 scenes (data/train-s5000-910: links to its first 910 samples, v16's split); resumes.
cd "$(dirname "$0")/.."
# The set's first 910 samples as links, so the split (and v16's validation scenes) stays v16's.
if [ ! -d data/train-s5000-910 ]; then
  mkdir -p data/train-s5000-910/exr data/train-s5000-910/samples
  ln -s ../train-s5000/dataset.json data/train-s5000-910/dataset.json
  for i in $(seq -f "%06g" 0 909); do
    ln -s ../../train-s5000/exr/$i data/train-s5000-910/exr/$i
    ln -s ../../train-s5000/samples/$i.json data/train-s5000-910/samples/$i.json
  done
fi
name=v18n-color resume=""
[ -f runs/$name/last.pt ] && resume="--resume auto"
.venv/bin/python -m training train --data data/train-s5000-910 --test-fraction 0 --val-fraction 0.1 --width 16 --growth 16 --depth 4 --head kernel \
 --kernel-size 3 --kernel-scales 5 --kernel-space both --post-kernel 3 --refine-width 16 --refine-bound 0.5 --patch 128 --patches-per-image 2 --batch-size 4 \
 --w-mse 1 --w-ssim 0.1 --w-l1 1 --w-psnr 0.001 --lr 3e-4 --warmup-steps 100 --threads ${THREADS:-2} --quiet \
 --albedo-texture 0.3 --epochs ${EPOCHS:-7} \
 --inputs color --upsample nearest --widen \
 --init models/denoiser-v16-color.onnx --seed 18 --out runs/$name $resume > logs/$name.log 2>&1
