"""``python -m blender_denoise_addon <command>``: see cli/__init__.py."""

import sys

from .cli import main

sys.exit(main())
