"""Zip uploads: the whole archive is checked before anything is extracted.

Refused (``InputError`` naming the archive and the member, never a server path):
members that would land outside the target (absolute, ``..``, NUL), encrypted
members, compression methods other than stored/deflate/bzip2/lzma, more than
``MAX_MEMBERS`` files, more than ``MAX_TOTAL_BYTES`` unpacked, a member or an
archive that unpacks to more than ``MAX_RATIO`` times its packed size, and an
archive with no files.  The archive is opened as a regular file of at most ``MAX_ZIP_BYTES``
through :mod:`vss_core.files.paths` (a :class:`~vss_core.files.paths.CheckedPath` is checked against its
roots when opened, so a zip swapped for a symlink leading elsewhere is never read).  Members are
streamed to disk in chunks (never read whole), each stops at its declared size, files are private
to the owner (0600 in 0700 folders), and a failed extraction removes what it wrote.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from vss_core.errors import FileRefused, InputError
from vss_core.files.paths import open_regular_file

MAX_MEMBERS = 100_000
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_ZIP_BYTES = 4 * 1024**3
"""Largest archive file read (its packed size)."""
MAX_RATIO = 100
RATIO_FLOOR_BYTES = 1024**2
"""Members smaller than this unpack freely (a tiny text file may compress 1000:1)."""
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_CHUNK = 1024**2


def extract_zip(zip_file: str | Path, into: str | Path, name: str | None = None) -> Path:
    """Check the whole archive, then extract its files into the new folder ``into``.

    ``name`` is how messages call the archive (default: its file name).  Returns ``into``.
    """
    display = name or Path(zip_file).name
    target = Path(into)
    try:
        with open_regular_file(zip_file, MAX_ZIP_BYTES) as handle, zipfile.ZipFile(handle) as archive:
            members = _checked_members(archive, display, os.fstat(handle.fileno()).st_size)
            target.mkdir(mode=0o700, parents=True)
            try:
                for member, relative in members:
                    _extract_one(archive, member, target / relative, display)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
    except FileRefused as exc:
        raise InputError(f"{display}: {exc.reason}") from None
    except zipfile.BadZipFile as exc:
        raise InputError(f"{display}: not a readable zip file ({exc})") from None
    except (OSError, EOFError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise InputError(f"{display}: not a readable zip file ({reason})") from None
    return target


def _checked_members(archive: zipfile.ZipFile, display: str, packed_size: int):
    members = [m for m in archive.infolist() if not m.is_dir()]
    if not members:
        raise InputError(f"{display}: the zip contains no files (expected <label>/<image> folders)")
    if len(members) > MAX_MEMBERS:
        raise InputError(f"{display}: {len(members):,} files is more than the {MAX_MEMBERS:,} a zip may hold")
    total = 0
    checked = []
    for member in members:
        checked.append((member, _member_path(member, display)))
        if member.flag_bits & 0x1:
            raise InputError(f"{display}: member {member.filename!r} is encrypted (password-protected zips "
                             "are not supported)")
        if member.compress_type not in _METHODS:
            raise InputError(f"{display}: member {member.filename!r} uses an unsupported compression "
                             f"method ({member.compress_type}); use deflate or store")
        ratio = member.file_size // max(member.compress_size, 1)
        if member.file_size > RATIO_FLOOR_BYTES and ratio > MAX_RATIO:
            raise InputError(f"{display}: member {member.filename!r} unpacks {ratio:,} times its packed size "
                             f"(more than {MAX_RATIO}x: a zip bomb?)")
        total += member.file_size
    if total > MAX_TOTAL_BYTES:
        raise InputError(f"{display}: unpacks to {total / 1024**3:.1f} GiB, more than {MAX_TOTAL_BYTES // 1024**3} GiB")
    if total > RATIO_FLOOR_BYTES and total > MAX_RATIO * max(packed_size, 1):
        raise InputError(f"{display}: unpacks to more than {MAX_RATIO} times its size (a zip bomb?)")
    return checked


def _member_path(member: zipfile.ZipInfo, display: str) -> PurePosixPath:
    raw = member.filename.replace("\\", "/")
    parts = PurePosixPath(raw).parts
    if (not parts or raw.startswith("/") or "\x00" in raw or ".." in parts
            or (len(parts[0]) >= 2 and parts[0][1] == ":")):
        raise InputError(f"{display}: member {member.filename!r} points outside the archive")
    return PurePosixPath(*[p for p in parts if p not in ("", ".")])


def _extract_one(archive: zipfile.ZipFile, member: zipfile.ZipInfo, destination: Path, display: str) -> None:
    _private_dirs(destination.parent)
    written = 0
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out, archive.open(member) as source:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > member.file_size:
                raise InputError(f"{display}: member {member.filename!r} is larger than its header says")
            out.write(chunk)


def _private_dirs(folder: Path) -> None:
    if not folder.is_dir():
        _private_dirs(folder.parent)
        folder.mkdir(mode=0o700)
