"""Robust image decoding: any file a user drops in becomes an RGB image or an ImageError.

EXIF orientation is applied, transparency is composited on white, 16-bit and
float images are scaled to 8 bits, CMYK/palette/grayscale become RGB.  JPEGs can
be decoded in PIL draft mode (DCT scaling) when only a smaller image is needed.

Memory is bounded in bytes, not only pixels: a file is read only when it is a regular
file of at most ``MAX_FILE_BYTES``; before pixels are allocated the bytes a decode needs
are estimated (after draft reduction) and an image over ``MAX_DECODE_BYTES`` is refused;
concurrent decodes share a budget of ``DECODE_BUDGET_BYTES`` (a decode waits until
enough of it is free), so a batch of hostile files cannot exhaust the machine.
"""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from vss_core.errors import FileRefused, ImageError
from vss_core.files.paths import read_regular_file

Source = Union[str, Path, bytes, bytearray, memoryview, BinaryIO]

MAX_PIXELS = 128_000_000
"""Largest image (width * height) we decode; larger files are treated as decompression bombs."""
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
MAX_FILE_BYTES = 256 * 1024**2
"""Largest image file read (checked before reading)."""
MAX_DECODE_BYTES = 1024**3
"""Most memory one decode may need (decoded pixels plus the conversions to 8-bit RGB)."""
DECODE_BUDGET_BYTES = 2 * 1024**3
"""Most memory all decodes of the process may need at once."""
_BAND_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2,
               "I": 4, "F": 4, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4,
               "CMYK": 4}
_ROWS = 512

_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WHITE = (255, 255, 255, 255)


@dataclass
class Decoded:
    """A decoded RGB image, upright, possibly draft-reduced.

    ``full_size`` is the upright (width, height) of the stored image; ``box`` is the
    region of ``image`` that maps exactly onto the full image (for ``Image.resize(box=)``),
    ``None`` when the image was not reduced.
    """

    image: Image.Image
    full_size: tuple[int, int]
    box: tuple[float, float, float, float] | None = None


def source_name(source: Source, name: str | None = None) -> str:
    """A short human-readable name for a source, for error messages."""
    if name:
        return str(name)
    if isinstance(source, (str, Path)):
        return str(source)
    fname = getattr(source, "name", None)
    return str(fname) if isinstance(fname, str) and fname else "<bytes>"


def decode(source: Source, name: str | None = None, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode a file path, bytes or binary file object into an upright RGB ``PIL.Image``.

    ``draft_size`` (width, height) lets JPEGs decode at a reduced scale that is still
    at least that large in both dimensions.  Raises :class:`ImageError` for missing,
    empty, corrupt, truncated, non-image and oversized (decompression bomb) files.
    """
    return decode_full(source, name, draft_size).image


def decode_full(source: Source, name: str | None = None, draft_size: tuple[int, int] | None = None) -> Decoded:
    """Like :func:`decode` but also returns the full upright size and the draft box."""
    label = source_name(source, name)
    try:
        return _decode(_open_bytes(source, label), draft_size)
    except ImageError as exc:
        raise ImageError(label, exc.reason) from None
    except Image.DecompressionBombError as exc:
        raise ImageError(label, f"image too large, possible decompression bomb ({exc})") from None
    except Image.DecompressionBombWarning as exc:
        raise ImageError(label, f"image too large, possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(label, "not an image file (format not recognised)") from None
    except MemoryError:
        raise ImageError(label, "image too large to decode (out of memory)") from None
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, struct.error, ...)
        raise ImageError(label, f"corrupt or truncated image ({type(exc).__name__}: {exc})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited on white."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        image = _to_8bit(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return image.convert("RGB")


def _open_bytes(source: Source, label: str) -> io.BytesIO:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        try:
            data = read_regular_file(source, MAX_FILE_BYTES)
        except FileRefused as exc:
            raise ImageError(label, exc.reason) from None
    elif hasattr(source, "getvalue"):
        data = source.getvalue()
    elif hasattr(source, "read"):
        data = source.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ImageError(label, f"over the cap of {MAX_FILE_BYTES:,} bytes")
    else:
        raise ImageError(label, f"unsupported source type {type(source).__name__}")
    if not data:
        raise ImageError(label, "empty file (0 bytes)")
    return io.BytesIO(data)


def _decode(fp: io.BytesIO, draft_size: tuple[int, int] | None) -> Decoded:
    im = Image.open(fp)
    width, height = im.size
    if width * height > MAX_PIXELS:
        raise ImageError("", f"image too large, possible decompression bomb ({width}x{height} pixels)")
    orientation = _orientation(im)
    box = _draft(im, draft_size, orientation)
    need = decode_bytes(im.mode, im.size)
    if need > MAX_DECODE_BYTES:
        raise ImageError("", f"image needs about {need / 2**20:,.0f} MiB to decode ({im.size[0]}x{im.size[1]} "
                             f"{im.mode}), over the cap of {MAX_DECODE_BYTES / 2**20:,.0f} MiB")
    with _BUDGET.reserve(need):
        im.load()
        raw_size = im.size
        image = to_rgb(im)
        del im
    method = _TRANSPOSE.get(orientation)
    full_size = (width, height)
    if method is not None:
        image = image.transpose(method)
        if orientation >= 5:
            full_size = (height, width)
        if box is not None:
            box = _orient_box(box, raw_size, orientation)
    return Decoded(image, full_size, box)


def decode_bytes(mode: str, size: tuple[int, int]) -> int:
    """Estimated peak bytes to decode an image of ``mode`` and ``size`` into 8-bit RGB."""
    pixels = size[0] * size[1]
    per_pixel = _BAND_BYTES.get(mode, 4) + 3
    if mode in _ALPHA_MODES or mode == "P":
        per_pixel += 12  # RGBA copy, white background, composite
    elif mode.startswith("I") or mode == "F":
        per_pixel += 1  # the 8-bit gray image between
    return pixels * per_pixel


class _Budget:
    """Bytes that concurrent decodes may hold at once; ``reserve`` waits for its share."""

    def __init__(self, total: int):
        self.total, self.used = total, 0
        self._free = threading.Condition()

    @contextmanager
    def reserve(self, n: int):
        n = min(n, self.total)
        with self._free:
            self._free.wait_for(lambda: self.used + n <= self.total)
            self.used += n
        try:
            yield
        finally:
            with self._free:
                self.used -= n
                self._free.notify_all()


_BUDGET = _Budget(DECODE_BUDGET_BYTES)


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # unreadable EXIF must not make the image unreadable
        return 1
    return value if value in _TRANSPOSE else 1


def _draft(im: Image.Image, draft_size: tuple[int, int] | None, orientation: int):
    if draft_size is None or not isinstance(im, JpegImagePlugin.JpegImageFile):
        return None
    want = tuple(draft_size[::-1]) if orientation >= 5 else tuple(draft_size)
    if want[0] <= 0 or want[1] <= 0 or im.size[0] < 2 * want[0] or im.size[1] < 2 * want[1]:
        return None
    before = im.size
    result = im.draft(None, want)
    if result is None or im.size == before:
        return None
    return tuple(float(v) for v in result[1])


def _orient_box(box, size, orientation: int):
    """Map a box of the stored image onto the image transposed for ``orientation``."""
    w, h = size
    x0, y0, x1, y1 = box
    if orientation == 2:
        return (w - x1, y0, w - x0, y1)
    if orientation == 3:
        return (w - x1, h - y1, w - x0, h - y0)
    if orientation == 4:
        return (x0, h - y1, x1, h - y0)
    if orientation == 5:
        return (y0, x0, y1, x1)
    if orientation == 6:
        return (h - y1, x0, h - y0, x1)
    if orientation == 7:
        return (h - y1, w - x1, h - y0, w - x0)
    return (y0, w - x1, y1, w - x0)


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float gray to 8 bits, a band of rows at a time (no full-size float copy)."""
    arr = np.asarray(image)
    if image.mode == "F":
        finite_max = max((np.nanmax(np.where(np.isfinite(b), b, np.nan), initial=-np.inf)
                          for b in _row_blocks(arr)), default=-np.inf)
        scale = 255.0 if finite_max <= 1.0 else 1.0
    elif image.mode == "I" and arr.size and arr.max() <= 255:
        scale = 1.0
    else:
        scale = 1 / 257.0
    out = np.empty(arr.shape, dtype=np.uint8)
    for start in range(0, arr.shape[0], _ROWS):
        block = arr[start:start + _ROWS].astype(np.float64) * scale
        block = np.nan_to_num(block, nan=0.0, posinf=255.0, neginf=0.0)
        out[start:start + _ROWS] = np.clip(np.rint(block), 0, 255)
    return Image.fromarray(out, mode="L")


def _row_blocks(arr: np.ndarray):
    for start in range(0, arr.shape[0], _ROWS):
        yield arr[start:start + _ROWS].astype(np.float64)
