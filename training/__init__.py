"""Training the denoiser: data, the Modified U-Net, losses, training, evaluation, ONNX export.

Run ``python -m training --help``. Stages import torch themselves; nothing in the
add-on imports this package.
"""
