"""AI Denoiser: denoise Cycles renders with a retrainable U-Net (ONNX, onnxruntime).

Blender-facing modules are imported inside register(), so ``python -m
blender_denoise_addon`` and the pure ``core`` package work without bpy.
"""

from __future__ import annotations


def register() -> None:
    from . import ui

    ui.register()


def unregister() -> None:
    from . import ui

    ui.unregister()
