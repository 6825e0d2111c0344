"""AI Denoiser: denoise Cycles renders with OIDN's published networks (ONNX, onnxruntime), retrainable.

Blender-facing modules are imported inside register(), so ``python -m
blender_denoise_addon`` and the pure ``core`` package work without bpy.
"""

from __future__ import annotations

from typing import Any

_cli_handle: Any = None


def register() -> None:
    global _cli_handle
    import bpy

    from . import cli
    from .blender import ui

    ui.register()
    # `blender -c ai_denoise <command> ...`: the same commands as `python -m blender_denoise_addon`.
    _cli_handle = bpy.utils.register_cli_command(cli.BLENDER_COMMAND, cli.blender_command)


def unregister() -> None:
    global _cli_handle
    import bpy

    from .blender import ui

    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    ui.unregister()
