#!/usr/bin/env bash
# v16b (color): v16a's run (logs/v16a.sh) with painted textures on 60 % of the crops; resumes.
NAME=v16b-color TEXTURE=0.6 exec "$(dirname "$0")/v16a.sh"
