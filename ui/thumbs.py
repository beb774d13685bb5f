"""Small JPEG thumbnails, cached for the whole server.

A gallery of 32 query images at top-5 shows ~190 thumbnails; decoding the
full-size originals on every rerun would take seconds, so thumbnails are made
once per (path, mtime, size) -- or per content hash for uploads -- and kept in
a bounded LRU shared by all sessions.  A file that is gone or unreadable gets a
placeholder instead.
"""

from __future__ import annotations

import hashlib
import io
import os
from functools import lru_cache

import streamlit as st
from PIL import Image, ImageDraw

from ui.lru import LRU
from vss_core.errors import PathNotAllowed
from vss_core.files.paths import checked_path, text_path

THUMB_PX = 160
_BACKGROUND = (238, 240, 243)


def _encode(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=82, optimize=False)
    return out.getvalue()


def _square(img: Image.Image, px: int) -> Image.Image:
    img = img.convert("RGB")
    img.thumbnail((px, px), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (px, px), _BACKGROUND)
    canvas.paste(img, ((px - img.width) // 2, (px - img.height) // 2))
    return canvas


@lru_cache(maxsize=8)
def placeholder(text: str = "file missing", px: int = THUMB_PX) -> bytes:
    """A grey tile with a short text, for exemplars whose file is gone."""
    img = Image.new("RGB", (px, px), (214, 218, 224))
    draw = ImageDraw.Draw(img)
    draw.rectangle([4, 4, px - 5, px - 5], outline=(160, 166, 176), width=2)
    draw.line([12, 12, px - 13, px - 13], fill=(190, 195, 203), width=2)
    draw.line([12, px - 13, px - 13, 12], fill=(190, 195, 203), width=2)
    box = draw.textbbox((0, 0), text)
    w, h = box[2] - box[0], box[3] - box[1]
    draw.rectangle([(px - w) // 2 - 6, (px - h) // 2 - 5, (px + w) // 2 + 6, (px + h) // 2 + 7],
                   fill=(255, 255, 255))
    draw.text(((px - w) // 2, (px - h) // 2), text, fill=(90, 96, 108))
    return _encode(img)


@lru_cache(maxsize=1)
def favicon() -> Image.Image:
    """The app's icon, drawn here so a ship without internet needs no icon download."""
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.ellipse([4, 4, 44, 44], outline=(11, 110, 153), width=7)
    draw.line([38, 38, 58, 58], fill=(11, 110, 153), width=9)
    draw.ellipse([16, 18, 32, 30], fill=(240, 160, 40))
    return img


def current_roots() -> tuple | None:
    """The folders whose images this session's project may show (none without a project); None
    outside a Streamlit script run (a tool or test calling in, no user): files are not root-checked."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    from ui import inputs, state

    if get_script_run_ctx() is None:
        return None
    project = state.current_project()
    return inputs.readable_roots(project) if project is not None else ()


def make_thumbnail(source: str | os.PathLike | bytes, px: int = THUMB_PX) -> bytes:
    """Decode ``source`` (a path or bytes), fit it in a px square and encode as JPEG."""
    from vss_core.files.images import decode

    img = decode(source, draft_size=(px * 2, px * 2))
    return _encode(_square(img, px))


class ThumbCache:
    """Thread-safe LRU of thumbnail bytes."""

    def __init__(self, max_items: int = 6000, px: int = THUMB_PX):
        self._items = LRU(max_items)
        self.px = px

    def _lookup(self, key: tuple, make) -> bytes:
        found = self._items.get(key)
        if found is not None:
            return found
        try:
            data = make()
        except Exception:  # unreadable image: any decoder failure becomes a placeholder
            data = placeholder("unreadable", self.px)
        self._items.put(key, data)
        return data

    def for_path(self, path: str | os.PathLike | None, roots=None) -> bytes:
        """The thumbnail of a file under ``roots`` (default: the current project's readable roots, see
        :func:`current_roots`), checked again when it is read; a placeholder for anything else."""
        if not path:
            return placeholder("no source", self.px)
        roots = current_roots() if roots is None else roots
        try:  # stored sources of non-UTF-8 names are file:// URIs
            path = text_path(os.fspath(path))
            path = path if roots is None else checked_path(path, roots)
            st_ = os.stat(path)
        except PathNotAllowed:
            return placeholder("outside data roots", self.px)
        except OSError:
            return placeholder("file missing", self.px)
        key = ("path", os.fspath(path), st_.st_mtime_ns, st_.st_size)
        return self._lookup(key, lambda: make_thumbnail(path, self.px))

    def for_bytes(self, data: bytes) -> bytes:
        key = ("bytes", hashlib.sha1(data).hexdigest())
        return self._lookup(key, lambda: make_thumbnail(data, self.px))

    def get(self, source) -> bytes:
        return self.for_bytes(source) if isinstance(source, (bytes, bytearray)) else self.for_path(source)


@st.cache_resource(show_spinner=False)
def thumb_cache() -> ThumbCache:
    return ThumbCache()
