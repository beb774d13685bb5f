"""Load labeled exemplars (folder, CSV or zip) into a project's vector store.

Ids come from file content (or a CSV ``id`` column), so the key
``doc:<label>:<id>`` of an image is the same on every run: a rerun, or a resumed
job after a crash, skips what is loaded and never adds a duplicate.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence

from vss_core.chunks import each_chunk
from vss_core.errors import FileRefused, InputError, PathNotAllowed
from vss_core.files.archive import extract_zip
from vss_core.files.images import MAX_FILE_BYTES
from vss_core.files.paths import CheckedPath, checked_path, name_text, open_regular_file, path_text, read_regular_file
from vss_core.labeling.labels import validate_label
from vss_core.redis.exemplars import Record

CHUNK = 512
ID_HEX_CHARS = 20
MAX_CSV_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class Item:
    """One image to load: where it is, its label, and optionally a given id."""

    path: Path
    label: str
    id: str | None = None
    source: str | None = None
    """What is stored as the exemplar's source (default: the resolved path, see ``paths.path_text``)."""


@dataclass
class LoadReport:
    """What a load did: counts and the reason each failed file failed."""

    loaded: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False

    @property
    def total(self) -> int:
        return self.loaded + self.skipped + len(self.failed)

    def summary(self) -> str:
        text = f"loaded {self.loaded}, skipped {self.skipped} (already loaded), failed {len(self.failed)}"
        return text + (" - cancelled" if self.cancelled else "")


class Progress(Protocol):
    """What a loader reports to: a job's progress reporter or a CLI progress bar."""

    def set_total(self, total: int) -> None: ...

    def advance(self, n: int, errors: Sequence[tuple[str, str]] = ()) -> None: ...


def collect_folder(folder: str | Path) -> list[Item]:
    """Images under ``folder/<label>/...``: the first sub-folder level names the label."""
    root = Path(folder)
    shown = path_text(root)
    if not root.is_dir():
        raise InputError(f"{shown}: not a folder")
    items = []
    try:
        for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            items += [Item(path, name_text(label_dir.name)) for path in files_under(label_dir)]
    except OSError as exc:
        raise InputError(f"{shown}: cannot list the folder: {exc.strerror or exc}") from None
    if not items:
        raise InputError(f"{shown}: no files found in label sub-folders (expected {shown}/<label>/<image>)")
    return items


def files_under(folder: Path) -> list[Path]:
    """Regular files under ``folder``, recursively, hidden files and folders skipped, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p.relative_to(folder)))


def collect_csv(csv_file: str | Path) -> list[Item]:
    """Rows ``path,label[,id]`` (header optional); relative paths are relative to the CSV file."""
    csv_path = _as_path(csv_file)
    rows = read_csv_rows(csv_path)
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
        start = 2
    else:
        start = 1
    items = []
    for line_no, row in enumerate(rows, start=start):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise InputError(f"{path_text(csv_path)} line {line_no}: expected path,label[,id], "
                             f"got {','.join(row)[:200]!r}")
        if any("\x00" in cell for cell in row):
            raise InputError(f"{path_text(csv_path)} line {line_no}: contains a NUL byte")
        label = validate_label(row[1], f"{path_text(csv_path)} line {line_no}")
        path = Path(row[0].strip()).expanduser()
        path = path if path.is_absolute() else csv_path.parent / path
        given_id = row[2].strip() if len(row) > 2 and row[2].strip() else None
        items.append(Item(path, label, given_id))
    if not items:
        raise InputError(f"{path_text(csv_path)}: no rows (expected path,label[,id])")
    return items


def read_csv_rows(csv_path: Path) -> list[list[str]]:
    """The rows of a UTF-8 CSV file (regular file, size-capped); InputError naming the file and line.

    A quoted cell keeps its line breaks (a label check then refuses them; a path keeps them)."""
    shown = path_text(csv_path)
    try:
        text = read_regular_file(csv_path, MAX_CSV_BYTES).decode("utf-8-sig")
    except FileRefused as exc:
        raise InputError(f"cannot read CSV {exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{shown}: cannot read CSV: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return list(reader)
    except csv.Error as exc:
        raise InputError(f"{shown} line {reader.line_num}: {exc}") from None


def _as_path(path: str | Path) -> Path:
    return path if isinstance(path, Path) else Path(path)


def collect_zip(zip_file: str | Path, into: str | Path, name: str | None = None) -> list[Item]:
    """Check the whole zip, extract its ``<label>/<image>`` folders into the new folder ``into``
    (see :mod:`vss_core.files.archive`) and collect them; each item's source is ``<name>/<member>``."""
    target = extract_zip(zip_file, into, name).resolve()
    label_root = _label_root(target)
    prefix = name or Path(zip_file).name
    return [Item(item.path, item.label, item.id, f"{prefix}/{item.path.relative_to(target).as_posix()}")
            for item in collect_folder(label_root)]


def load_job(source: str, path: str, roots: Sequence[Path], embedder, store, added_by: str = ""):
    """The body of a background load job: ``fn(progress) -> LoadReport`` for a JobRegistry.

    ``source`` is "folder", "csv" or "zip" (extracted into a private folder beside the zip
    file, removed after the load).  Files outside ``roots`` (the extracted folder for a zip)
    are refused and listed as failures; the rest load.
    """
    def work(progress) -> LoadReport:
        progress.message("Collecting files…")
        with collected(source, path, roots) as (allowed, refused):
            progress.message(f"Loading {len(allowed) + len(refused)} files…")
            report = load_items(allowed, embedder, store, added_by, progress=_WithRefused(progress, refused),
                                cancel=lambda: progress.cancelled)
            report.failed[:0] = refused
            progress.message(report.summary())
            return report

    return work


@contextlib.contextmanager
def collected(source: str, path: str, roots: Sequence[Path]) -> Iterator[tuple[list[Item], list[tuple[str, str]]]]:
    """(items to load, (file, reason) refused as outside ``roots``) of a "folder", "csv" or "zip" source.

    A zip is extracted into a private folder beside it (checked whole first), removed when the block ends."""
    if source != "zip":
        base = checked_path(path, roots)
        yield _split(collect_csv(base) if source == "csv" else collect_folder(base), roots)
        return
    archive = checked_path(path, (Path(path).parent,))  # the upload itself, not a link to elsewhere
    into = Path(tempfile.mkdtemp(prefix=".unzip-", dir=archive.parent))
    try:
        yield _split(collect_zip(archive, into / "files", archive.name), (into,))
    finally:
        shutil.rmtree(into, ignore_errors=True)


def _split(items: list[Item], allowed_roots) -> tuple[list[Item], list[tuple[str, str]]]:
    allowed, refused = [], []
    for item in items:
        try:
            allowed.append(Item(checked_path(item.path, allowed_roots), item.label, item.id, item.source))
        except PathNotAllowed as exc:
            refused.append((path_text(item.path), str(exc)))
    return allowed, refused


class _WithRefused:
    """Counts files refused before loading (outside the data roots) as done-with-error."""

    def __init__(self, progress: Progress, refused: list[tuple[str, str]]):
        self._progress, self._refused = progress, refused

    def set_total(self, total: int) -> None:
        self._progress.set_total(total + len(self._refused))
        if self._refused:
            self._progress.advance(len(self._refused), errors=self._refused)

    def advance(self, n: int, errors=()) -> None:
        self._progress.advance(n, errors=errors)


def content_id(data: bytes) -> str:
    """A stable id for an image file's bytes."""
    return _short_id(hashlib.sha1(data))


def _short_id(digest) -> str:
    return digest.hexdigest()[:ID_HEX_CHARS]


def load_items(items: Sequence[Item], embedder, store, added_by: str = "",
               progress: Progress | None = None,
               cancel: Callable[[], bool] | None = None) -> LoadReport:
    """Embed and insert ``items``, skipping those already in ``store``.

    Reports to ``progress`` as it goes; stops between batches when ``cancel()``
    is true.  A file that cannot be read or decoded fails alone.
    """
    report = LoadReport()
    if progress:
        progress.set_total(len(items))

    def load(_, chunk) -> None:
        _load_chunk(chunk, embedder, store, added_by, progress, cancel, report)

    if not each_chunk(items, CHUNK, load, cancel):
        report.cancelled = True  # stopped before a chunk (_load_chunk says so when it stops within one)
    if report.loaded:
        store.sync()
    return report


def _load_chunk(chunk, embedder, store, added_by, progress, cancel, report: LoadReport) -> None:
    keyed, unreadable = _identify(chunk, store)
    existing = store.exists([key for key, _ in keyed]) if keyed else []
    todo = list({key: item for (key, item), found in zip(keyed, existing) if not found}.items())
    report.skipped += len(keyed) - len(todo)
    report.failed.extend(unreadable)
    _advance(progress, len(chunk) - len(todo), unreadable)
    if not todo:
        return
    for batch in embedder.iter_embed([item.path for _, item in todo]):
        records = [_record(todo[index], vector, added_by, embedder)
                   for index, vector in zip(batch.ok, batch.vectors)]
        written = store.add(records)
        errors = [(path_text(todo[err.index][1].path), err.reason) for err in batch.errors]
        report.loaded += written
        report.skipped += len(records) - written  # stored meanwhile by another load
        report.failed.extend(errors)
        _advance(progress, len(records) + len(errors), errors)
        if cancel and cancel():
            report.cancelled = True
            return


def _identify(chunk: Iterable[Item], store) -> tuple[list[tuple[str, Item]], list[tuple[str, str]]]:
    keyed, unreadable = [], []
    for item in chunk:
        try:
            validate_label(item.label)
        except InputError as exc:
            unreadable.append((path_text(item.path), str(exc)))
            continue
        if item.id:
            keyed.append((store.key_for(item.label, item.id), item))
            continue
        try:
            item_id = file_id(item.path)
        except FileRefused as exc:
            unreadable.append((path_text(item.path), f"cannot read file: {exc.reason}"))
            continue
        item = Item(item.path, item.label, item_id, item.source)
        keyed.append((store.key_for(item.label, item.id), item))
    return keyed, unreadable


def file_id(path: Path) -> str:
    """The content id of a regular file, read in chunks under the size cap; FileRefused otherwise."""
    digest = hashlib.sha1()
    with open_regular_file(path, MAX_FILE_BYTES) as handle:
        try:
            while chunk := handle.read(1024**2):
                digest.update(chunk)
        except OSError as exc:
            raise FileRefused(path_text(path), exc.strerror or str(exc)) from None
    return _short_id(digest)


def _record(entry: tuple[str, Item], vector, added_by: str, embedder) -> Record:
    _, item = entry
    where = item.path if isinstance(item.path, CheckedPath) and item.path.roots else item.path.resolve()
    return Record(label=item.label, id=item.id, vector=vector,
                  source=item.source or path_text(where), added_by=added_by,
                  model=getattr(embedder, "model_name", ""))


def _advance(progress: Progress | None, n: int, errors) -> None:
    if progress and (n or errors):
        progress.advance(n, errors=errors)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in relative.parts)


def _label_root(folder: Path) -> Path:
    entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        if all(p.is_dir() for p in inner.iterdir() if not p.name.startswith(".")):
            return inner
    return folder
