"""Server-side paths: which a user may name, how they are stored, and how files are read.

Paths are stored and exported as text by :func:`path_text`, which is lossless for file
names that are not valid UTF-8 (:func:`text_path` turns the text back into the path).
Files are read only through :func:`open_regular_file` / :func:`read_regular_file`:
regular files only (a FIFO, device or folder is refused before it is opened for
reading), with a size cap checked before the first byte is read.

A path a user may name lies under a project's data roots: one typed into the app (a folder
of exemplars, a CSV, query images) is resolved -- ``..`` collapsed and every symlink followed -- and then has to lie
under one of the configured ``vss.data_roots``.  Anything else is refused with
:class:`~vss_core.errors.PathNotAllowed`, whose message names the path.
"""

from __future__ import annotations

import os
import stat
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Iterable

from vss_core.errors import FileRefused, PathNotAllowed

__all__ = ["resolve_under_roots", "path_text", "text_path", "name_text", "open_regular_file",
           "read_regular_file"]

_URI = "file://"
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def path_text(path: str | os.PathLike) -> str:
    """The text under which ``path`` is stored, exported and shown: the path itself when its
    name is valid UTF-8, else a ``file://`` URI with the bytes percent-encoded (lossless)."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _URI + urllib.parse.quote(os.fsencode(os.path.abspath(text)), safe="/")


def text_path(text: str) -> Path:
    """The path :func:`path_text` made ``text`` from."""
    if text.startswith(_URI):
        return Path(os.fsdecode(urllib.parse.unquote_to_bytes(text[len(_URI):])))
    return Path(text)


def name_text(name: str) -> str:
    """A file or folder name as valid UTF-8 text: undecodable bytes become ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _refuse_kind(mode: int) -> str | None:
    for test, kind in _KINDS:
        if test(mode):
            return f"not a regular file ({kind})"
    return None if stat.S_ISREG(mode) else "not a regular file"


def _checked(info: os.stat_result, max_bytes: int) -> str | None:
    reason = _refuse_kind(info.st_mode)
    if reason is None and info.st_size > max_bytes:
        reason = f"{info.st_size:,} bytes is over the cap of {max_bytes:,} bytes"
    return reason


@contextmanager
def open_regular_file(path: str | os.PathLike, max_bytes: int) -> Iterator[BinaryIO]:
    """Open a regular file of at most ``max_bytes`` for reading; :class:`FileRefused` otherwise.

    The type and size are checked with ``stat`` before opening, and again on the open
    descriptor (opened non-blocking, so a file swapped for a FIFO cannot hang the open).
    """
    name = path_text(path)
    try:
        reason = _checked(os.stat(path), max_bytes)
        if reason:
            raise FileRefused(name, reason)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileRefused(name, "file not found") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise FileRefused(name, f"cannot read file ({getattr(exc, 'strerror', None) or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        reason = _checked(os.fstat(fd), max_bytes)
        if reason:
            raise FileRefused(name, reason)
        os.set_blocking(fd, True)
        yield handle


def read_regular_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see :func:`open_regular_file`)."""
    with open_regular_file(path, max_bytes) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise FileRefused(path_text(path), f"cannot read file ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise FileRefused(path_text(path), f"grew past the cap of {max_bytes:,} bytes while being read")
    return data


def _clean(path: str | os.PathLike) -> str:
    text = os.fspath(path).strip()
    # People paste paths with quotes around them from a file manager or shell.
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()
    return text


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long for the file system
        return False


def resolve_under_roots(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> Path:
    """Resolve ``path`` and return it when it lies under one of ``roots``.

    A relative ``path`` is taken relative to the roots (the first root under
    which it exists, else the first root), never to the server's working
    directory.  The resolved path must be a root or lie below one after every
    symlink is followed, so ``..`` and symlinks that lead out are refused.
    The path need not exist; callers check that.

    Raises :class:`PathNotAllowed` naming the path when it is empty, when no
    roots are configured, or when it lies outside every root.
    """
    text = _clean(path)
    if not text:
        raise PathNotAllowed("No server path given.")
    if "\x00" in text:
        raise PathNotAllowed(f"Server path {text!r} refused: it contains a NUL byte.")
    raw = os.fsencode(text)
    if len(raw) >= 4096 or any(len(part) > 255 for part in raw.split(b"/")):
        raise PathNotAllowed(f"Server path '{text[:80]}…' refused: it is too long for a file system path.")
    root_list = [Path(os.fspath(r)).expanduser() for r in roots if os.fspath(r).strip()]
    if not root_list:
        raise PathNotAllowed(
            f"Server path '{text}' refused: this project has no data roots; "
            "set vss.data_roots in its config file to the folders the app may read."
        )
    resolved_roots = [r.resolve() for r in root_list]

    candidate = Path(text).expanduser()
    if candidate.is_absolute():
        candidates = [candidate]
    else:
        joined = [r / candidate for r in resolved_roots]
        existing = [c for c in joined if _exists(c)]
        candidates = existing or joined[:1]

    for cand in candidates:
        try:
            resolved = cand.resolve()
        except (OSError, RuntimeError) as e:  # symlink loop, permission on a parent
            raise PathNotAllowed(f"Server path '{text}' cannot be resolved: {e}") from None
        for root in resolved_roots:
            if resolved == root or resolved.is_relative_to(root):
                return resolved

    allowed = ", ".join(str(r) for r in resolved_roots)
    raise PathNotAllowed(
        f"Server path '{text}' is outside the project's data roots ({allowed}); "
        "only files under vss.data_roots can be read."
    )
