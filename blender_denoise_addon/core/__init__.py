"""The denoising core: numpy + onnxruntime only, never bpy.

Everything Blender-facing converts bpy data to numpy arrays and calls in here.
"""

from .contract import ModelInfo, parse_metadata
from .denoise import DenoiseResult, DenoiseStats, InputReport, denoise
from .errors import DenoiseCancelled, DenoiseError, MissingPassError, ModelContractError
from .imageio import Frame, read_image, write_image
from .model import Model, load_model
from .options import Options

__all__ = [
    "DenoiseCancelled",
    "DenoiseError",
    "DenoiseResult",
    "DenoiseStats",
    "Frame",
    "InputReport",
    "MissingPassError",
    "Model",
    "ModelContractError",
    "ModelInfo",
    "Options",
    "denoise",
    "load_model",
    "parse_metadata",
    "read_image",
    "write_image",
]
