"""Typed errors of the VSS engine.

Every error a user can cause is a :class:`VSSError`; its message names the file,
key, project or image at fault.  Pages show ``str(error)``; anything that is not
a ``VSSError`` is a bug.
"""


class VSSError(Exception):
    """Root of every error the engine raises on purpose."""


class ConfigError(VSSError):
    """A project config file is unreadable or invalid."""

    def __init__(self, message: str, file: str | None = None, key: str | None = None):
        where = ", ".join(p for p in (file and f"file {file}", key and f"key '{key}'") if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.key = key


class RedisUnavailable(VSSError):
    """Redis (embedded or external) cannot be started or reached."""


class IndexMismatch(VSSError):
    """The Redis index exists with a layout the model cannot use (e.g. dimension)."""


class SearchIncomplete(VSSError):
    """A KNN query timed out or returned fewer results than the index holds."""


class ModelLoadError(VSSError):
    """The embedding model or its image processor cannot be loaded."""


class ImageError(VSSError):
    """One image cannot be read or decoded; the batch it was in goes on.

    ``index`` is the image's position in the batch it was given in, when known.
    """

    def __init__(self, source: str, reason: str, index: int | None = None):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
        self.index = index


class PathNotAllowed(VSSError):
    """A server path lies outside the project's configured data roots."""


class JobError(VSSError):
    """A background job cannot be started, found or resumed."""


class InputError(VSSError):
    """A user-supplied folder, CSV or zip file cannot be used as given."""


class FileRefused(InputError):
    """A file VSS will not read: missing, not a regular file (FIFO, device, folder) or over a size cap.

    ``source`` names the file (in its lossless text form), ``reason`` says why.
    """

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
