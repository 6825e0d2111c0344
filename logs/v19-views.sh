#!/usr/bin/env bash
# Views (symlinks) of the re-rendered seed-5000 set for v19: its first N complete samples split into
# data/s5000-v19/ (training: everything not in v16's validation) and data/s5000-val910/ (the scenes of
# v16's 91 validation scenes, split seed 0 over the first 910, that are rendered: neither model trained on them).
# TRAIN and VAL name other folders (v25: N=360 TRAIN=data/s5000-v25 VAL=data/s5000-val910b).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:?set N, the samples to use}
train=${TRAIN:-data/s5000-v19} held=${VAL:-data/s5000-val910}
rm -rf "$train" "$held"
for d in "$train" "$held"; do
  mkdir -p $d/exr $d/samples && ln -s ../train-s5000/dataset.json $d/dataset.json
done
val=$(.venv/bin/python -c "
from training.dataset import split_scenes
s = split_scenes([f'{i:06d}' for i in range(910)], 0.1, 0.0, 0)
print(' '.join(k for k, v in s.items() if v == 'val'))")
for i in $(seq -f "%06g" 0 $((n - 1))); do
  [ -f data/train-s5000/samples/$i.json ] || continue
  d=$train; [[ " $val " == *" $i "* ]] && d=$held
  ln -s ../../train-s5000/exr/$i $d/exr/$i
  ln -s ../../train-s5000/samples/$i.json $d/samples/$i.json
done
echo "training $(ls "$train"/samples | wc -l), v16-validation $(ls "$held"/samples | wc -l)"
