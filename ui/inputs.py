"""Turning uploads and typed server paths into image sources, with per-file messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from vss_core.config.projects import ProjectConfig
from vss_core.errors import InputError, PathNotAllowed, VSSError
from vss_core.files.paths import atomic_write, checked_path, name_text, resolve_under_roots
from vss_core.labeling.loader import content_id
from vss_core.labeling.predict import collect_images

IMAGE_TYPES = ["jpg", "jpeg", "png", "tif", "tiff", "bmp", "gif", "webp"]
MAX_QUERIES = 500


def uploads_dir(project: ProjectConfig) -> Path:
    """Where the app keeps uploaded files of ``project`` (named by content, private to the owner)."""
    return project.data_dir / "uploads"


def readable_roots(project: ProjectConfig) -> tuple[Path, ...]:
    """The folders whose files the app may read and show: the data roots and the uploads folder."""
    return (*project.data_roots, uploads_dir(project))


def upload_cap_bytes() -> int:
    return int(st.get_option("server.maxUploadSize")) * 1024 * 1024


@dataclass
class Sources:
    """Query images ready for ``search``: sources (bytes or paths), display names, and problems."""

    sources: list = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def add(self, source, name: str) -> None:
        if len(self.sources) >= MAX_QUERIES:
            self.problems.append((name, f"not searched: at most {MAX_QUERIES} images per search"))
            return
        self.sources.append(source)
        self.names.append(name)


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower().lstrip(".") in IMAGE_TYPES


def add_uploads(out: Sources, files) -> None:
    """Uploaded files: over the cap, empty or not an image type get a message each."""
    cap = upload_cap_bytes()
    for f in files or []:
        if f.size > cap:
            out.problems.append((f.name, f"{f.size / 1e6:.1f} MB is over the upload cap of {cap // 2**20} MB"))
        elif f.size == 0:
            out.problems.append((f.name, "empty file"))
        elif not _is_image_name(f.name):
            out.problems.append((f.name, "not an image file (expected " + ", ".join(IMAGE_TYPES) + ")"))
        else:
            out.add(f.getvalue(), f.name)


def resolve_server_path(text: str, project: ProjectConfig) -> Path:
    """A typed server path resolved under the project's data roots (PathNotAllowed otherwise)."""
    path = resolve_under_roots(text, project.data_roots)
    if not path.exists():
        raise PathNotAllowed(f"Server path '{text}' does not exist.")
    return path


def add_server_path(out: Sources, text: str, project: ProjectConfig) -> None:
    """A file, or every file of a folder and its sub-folders; non-images are named and skipped."""
    path = resolve_server_path(text, project)
    if path.is_file():
        out.add(checked_path(path, project.data_roots), name_text(path.name))
        return
    if not path.is_dir():
        raise VSSError(f"Server path '{text}' is neither a regular file nor a folder.")
    try:
        files = collect_images(path)
    except InputError:
        raise VSSError(f"Folder '{text}' has no files.") from None
    for p in files:
        name = name_text(str(p.relative_to(path)))
        try:  # a symlink in the folder may lead out of the roots; the check holds again when it is read
            source = checked_path(p, project.data_roots)
        except PathNotAllowed:
            out.problems.append((name, "skipped: it leads outside the project's data roots"))
            continue
        if _is_image_name(p.name):
            out.add(source, name)
        else:
            out.problems.append((name, "skipped: not an image file"))


def save_upload(data: bytes, name: str, folder: Path) -> Path:
    """Keep an uploaded file under the project's data dir, named by its content, private to the owner."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / f"{content_id(data)}{Path(name).suffix.lower()}"
    if not target.exists():
        atomic_write(target, data)
    return target
