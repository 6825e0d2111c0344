"""The core's single exception family: callers catch DenoiseError and show str(e)."""


class DenoiseError(Exception):
    """Any failure the user can act on: bad model, bad image, bad option."""


class ModelContractError(DenoiseError):
    """The ONNX file is missing, unreadable, or breaks the model contract."""


class MissingPassError(DenoiseError):
    """The model needs an auxiliary pass (albedo, normal) the image does not have."""


class DenoiseCancelled(DenoiseError):
    """The caller asked to stop; nothing was written."""
