"""Errors raised by `autolabel.storage`. Messages never contain credentials or presigned URLs."""


class StorageError(Exception):
    """Root of every error raised by `autolabel.storage`."""


class TransientStorageError(StorageError):
    """A failure worth retrying: throttling, connection resets, database operational errors."""


class StorageConfigError(StorageError, ValueError):
    """A storage or database location that cannot be used (unknown scheme, missing bucket...)."""


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """A key that does not exist in the object store."""


class UnsafeKeyError(StorageError, ValueError):
    """A key that would reach outside the store's root (`..`, absolute path, symlink out)."""


class InvalidImageError(StorageError, ValueError):
    """Bytes that cannot be decoded into an RGB image; `reason` is a stable machine code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type["InvalidImageError"], tuple[str, str]]:
        return (type(self), (self.reason, self.detail))


class FormatError(StorageError, ValueError):
    """A COCO or SA-1B file that does not follow its format."""


class ConflictError(StorageError, ValueError):
    """A write that contradicts stored data (e.g. a model version name reused with new weights)."""


class DatasetBusyError(ConflictError):
    """A label job refused because another job's run is labeling the same dataset."""
