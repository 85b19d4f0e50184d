"""Errors raised by `autolabel.models`: every message says what was expected and what came."""


class ModelError(Exception):
    """Root of every error raised by `autolabel.models`."""


class UnknownModelError(ModelError, LookupError):
    """A model name that is not in the registry."""


class CheckpointError(ModelError, RuntimeError):
    """A checkpoint file that is missing, unreadable or fails its checksum."""


class ChecksumMismatchError(CheckpointError):
    """A checkpoint whose sha256 differs from the pinned one."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose keys or shapes differ from the architecture (strict loading)."""


class WeightsUnavailableError(CheckpointError, FileNotFoundError):
    """Weights that are not on disk and could not be downloaded (for example offline)."""


class InvalidInputError(ModelError, ValueError):
    """An image or prompt with the wrong type, shape, dtype or value."""


class ImageNotSetError(ModelError, RuntimeError):
    """A `SamPredictor` asked to predict before `set_image` was called in the same thread."""


class RuntimeUnavailableError(ModelError, RuntimeError):
    """An inference runtime (TensorRT, CUDA) that is not installed here, or that cannot build,
    load or run an engine on this machine."""
