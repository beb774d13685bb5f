"""Server-side paths: which a user may name, how they are stored, and how files are read.

Paths are stored and exported as text by :func:`path_text`, which is lossless for file
names that are not valid UTF-8 (:func:`text_path` turns the text back into the path).
Files are read only through :func:`open_regular_file` / :func:`read_regular_file`:
regular files only (a FIFO, device or folder is refused before it is opened for
reading), with a size cap checked before the first byte is read.  Files are written whole through
:func:`atomic_write`.

A path a user may name lies under a project's data roots: one typed into the app (a folder
of exemplars, a CSV, query images) is resolved -- ``..`` collapsed and every symlink followed -- and then has to lie
under one of the configured ``vss.data_roots``.  Anything else is refused with
:class:`~vss_core.errors.PathNotAllowed`, whose message names the path.

The check holds at the moment a file is opened, not only when its name was checked:
:func:`checked_path` gives a :class:`CheckedPath` (the resolved path bound to its roots), and
every open of one through this module (:func:`open_checked`) opens the resolved path with
``O_NOFOLLOW`` and then checks where the opened descriptor really is (``/proc/self/fd``; on
systems without it, its device and inode against the path's).  A file swapped for a symlink, or a
folder swapped for one leading out, after the check is refused with
:class:`~vss_core.errors.FileRefused` and never read.  Readers (images, preprocessing, the
loader's ids, thumbnails) pass such paths on unchanged, so the bytes decoded are the bytes checked.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
import urllib.parse
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from vss_core.errors import FileRefused, PathNotAllowed

__all__ = ["resolve_under_roots", "path_text", "text_path", "name_text", "open_regular_file",
           "read_regular_file", "CheckedPath", "checked_path", "open_checked", "OUTSIDE_ROOTS", "atomic_write"]

_URI = "file://"
OUTSIDE_ROOTS = "outside the project's data roots (a symbolic link or '..' leads out of them)"
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


class CheckedPath(type(Path())):
    """A resolved path bound to the data roots it was checked against (see :func:`checked_path`).

    It is a ``Path`` (readers take it as one, worker processes get it pickled with its roots);
    opening it through this module checks again that the opened file lies under ``roots``.
    Paths derived from it (``parent``, ``/``) are plain, unchecked paths.
    """

    roots: tuple[Path, ...] = ()

    def __new__(cls, *args, roots: Iterable[Path] = ()):
        self = super().__new__(cls, *args)
        self.roots = tuple(roots)
        return self

    if sys.version_info >= (3, 12):  # pathlib calls __init__ with the path segments there
        def __init__(self, *args, roots: Iterable[Path] = ()):
            super().__init__(*args)

        def with_segments(self, *args):
            return Path(*args)

    def __reduce__(self):
        return _rebuild, (os.fspath(self), self.roots)


def _rebuild(text: str, roots: tuple) -> CheckedPath:
    return CheckedPath(text, roots=roots)


def checked_path(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> CheckedPath:
    """``path`` resolved under ``roots`` (see :func:`resolve_under_roots`, which raises
    :class:`PathNotAllowed`), bound to the resolved roots so that every open checks again."""
    resolved, resolved_roots = _resolve(path, roots)
    return CheckedPath(resolved, roots=tuple(resolved_roots))


@contextmanager
def open_checked(path: str | os.PathLike, roots: Iterable[str | os.PathLike], max_bytes: int) -> Iterator[BinaryIO]:
    """Open a regular file of at most ``max_bytes`` that lies under ``roots`` when it is opened.

    A path outside them (after every symlink) or one that changes into a symlink, or moves out,
    between the check and the open is refused with :class:`FileRefused` before a byte is read."""
    if not isinstance(path, CheckedPath) or not path.roots:
        try:
            path = checked_path(path, roots)
        except PathNotAllowed:
            raise FileRefused(path_text(path), OUTSIDE_ROOTS) from None
    with open_regular_file(path, max_bytes) as handle:
        yield handle


@contextmanager
def open_regular_file(path: str | os.PathLike, max_bytes: int) -> Iterator[BinaryIO]:
    """Open a regular file of at most ``max_bytes`` for reading; :class:`FileRefused` otherwise.

    The type and size are checked with ``stat`` before opening, and again on the open
    descriptor (opened non-blocking, so a file swapped for a FIFO cannot hang the open).
    A :class:`CheckedPath` is opened without following a symlink, and the descriptor must
    lie under its roots (see :func:`open_checked`).
    """
    name = path_text(path)
    roots = path.roots if isinstance(path, CheckedPath) else ()
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if roots else 0)
    try:
        info = os.lstat(path) if roots else os.stat(path)
        if roots and stat.S_ISLNK(info.st_mode):
            raise FileRefused(name, OUTSIDE_ROOTS)
        reason = _checked(info, max_bytes)
        if reason:
            raise FileRefused(name, reason)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileRefused(name, "file not found") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name; ELOOP: now a symlink
        if roots and getattr(exc, "errno", None) == errno.ELOOP:
            raise FileRefused(name, OUTSIDE_ROOTS) from None
        raise FileRefused(name, f"cannot read file ({getattr(exc, 'strerror', None) or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        opened = os.fstat(fd)
        reason = _checked(opened, max_bytes) or (_escaped(fd, opened, path, roots) if roots else None)
        if reason:
            raise FileRefused(name, reason)
        os.set_blocking(fd, True)
        yield handle


def _escaped(fd: int, opened: os.stat_result, path: CheckedPath, roots: tuple[Path, ...]) -> str | None:
    """Why the open descriptor is not the checked file under ``roots`` (None when it is)."""
    try:
        where = Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:  # no /proc: the descriptor must be the file the checked name names now
        try:
            now = os.stat(path)
        except OSError:
            return "file not found"
        same = (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)
        return None if same else OUTSIDE_ROOTS
    return None if any(where == root or where.is_relative_to(root) for root in roots) else OUTSIDE_ROOTS


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


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[Path], object], mode: int = 0o600) -> Path:
    """Replace ``path`` with ``data`` all at once; returns ``path``.

    ``data`` is bytes, text (written as UTF-8), or a function that writes the file at the temporary path it
    is given (a library's ``save(path)``).  That hidden file beside ``path`` (permissions ``mode``) is named
    for this writer alone (process, thread and a random part), flushed to disk, then renamed over ``path``:
    a reader sees the old file or the whole new one, writers racing for one path each leave a whole file
    (the last rename wins), and a write that fails leaves ``path`` as it was and no temporary file behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:12]}.part")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode), "wb") as out:
            if not callable(data):
                out.write(data.encode("utf-8") if isinstance(data, str) else data)
        if callable(data):
            data(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


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
    return _resolve(path, roots)[0]


def _resolve(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> tuple[Path, list[Path]]:
    """(``path`` resolved under ``roots``, the resolved roots); see :func:`resolve_under_roots`."""
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
                return resolved, resolved_roots

    allowed = ", ".join(str(r) for r in resolved_roots)
    raise PathNotAllowed(
        f"Server path '{text}' is outside the project's data roots ({allowed}); "
        "only files under vss.data_roots can be read."
    )
