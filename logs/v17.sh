#!/usr/bin/env bash
# v17 (color): v16a's run (logs/v16a.sh) plus the image-gradient L1 term (--w-gradient 1); resumes.
NAME=v17-color EXTRA="--w-gradient 1" exec "$(dirname "$0")/v16a.sh"
