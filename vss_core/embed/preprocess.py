"""Image preprocessing for the embedder: a fast path and the transformers processor path.

The fast path reads the Hugging Face image processor's own settings (resize size and
resample filter, center crop, rescale, normalize) and reproduces them with a JPEG
draft-mode decode, one PIL resize and a fused numpy rescale/normalize.  Processors
whose settings it cannot reproduce go through the processor itself.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vss_core.errors import FileRefused
from vss_core.files import images
from vss_core.files.paths import read_regular_file

_GENERIC_NAMES = {"ViTImageProcessor", "BitImageProcessor"}
_PIPELINE_METHODS = ("preprocess", "_preprocess", "_preprocess_image_like_inputs", "process_image",
                     "resize", "center_crop", "rescale", "normalize", "_standardize_kwargs")
_HANDLED_FLAGS = {"do_resize", "do_center_crop", "do_rescale", "do_normalize", "do_convert_rgb"}
_INTERPOLATION_NAMES = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
# torch's antialiased uint8 resize matches PIL's bilinear/bicubic to one level, 2-5x faster
_TORCH_MODES = {int(Image.Resampling.BILINEAR): "bilinear", int(Image.Resampling.BICUBIC): "bicubic"}


@dataclass(frozen=True)
class FastSpec:
    """What the fast path does: resize, crop, then ``pixel * mul + add`` per channel."""

    fixed_size: tuple[int, int] | None  # (height, width)
    shortest_edge: int | None
    resample: int
    crop: tuple[int, int] | None  # (height, width)
    mul: tuple[float, float, float]
    add: tuple[float, float, float]


class ProcessorPath:
    """Preprocess with the transformers image processor itself (reference behaviour)."""

    fast = False

    def __init__(self, processor):
        self.processor = processor

    def load(self, source, name: str | None = None) -> np.ndarray:
        """Decode ``source`` and return its (3, H, W) float32 model input."""
        return self.process(images.decode(source, name))

    def process(self, image: Image.Image) -> np.ndarray:
        """Return the (3, H, W) float32 model input of a PIL image."""
        out = self.processor(images=images.to_rgb(image), return_tensors="np")["pixel_values"]
        return np.asarray(out[0], dtype=np.float32)


class FastPath:
    """Draft-mode JPEG decode + one PIL resize + numpy normalize, following a processor's config."""

    fast = True

    def __init__(self, spec: FastSpec, torch_resize: bool = True):
        self.spec = spec
        self.torch_resize = torch_resize
        self._mul = np.asarray(spec.mul, dtype=np.float32)[:, None, None]
        self._add = np.asarray(spec.add, dtype=np.float32)[:, None, None]

    @property
    def draft_size(self) -> tuple[int, int] | None:
        """Smallest (width, height) a draft-mode decode may reduce a JPEG to."""
        if self.spec.fixed_size:
            return self.spec.fixed_size[::-1]
        if self.spec.shortest_edge:
            return (self.spec.shortest_edge, self.spec.shortest_edge)
        return None

    def target_size(self, full_size: tuple[int, int]) -> tuple[int, int] | None:
        """(width, height) after resize for an upright image of ``full_size``, as transformers computes it."""
        if self.spec.fixed_size:
            return self.spec.fixed_size[::-1]
        if not self.spec.shortest_edge:
            return None
        width, height = full_size
        short, long = (width, height) if width <= height else (height, width)
        edge = self.spec.shortest_edge
        new_long = int(edge * long / short)
        return (edge, new_long) if width <= height else (new_long, edge)

    @property
    def output_size(self) -> tuple[int, int] | None:
        """(height, width) of every model input when it does not depend on the image, else ``None``."""
        return self.spec.crop or self.spec.fixed_size

    def load(self, source, name: str | None = None) -> np.ndarray:
        """Decode ``source`` (draft mode for JPEG) and return its (3, H, W) float32 model input."""
        return self.normalize(self.load_uint8(source, name))

    def load_uint8(self, source, name: str | None = None) -> np.ndarray:
        """Decode ``source`` and return it resized and cropped, (H, W, 3) uint8, not yet normalised.

        Plain upright YCbCr JPEGs decode with libjpeg-turbo's DCT scaling through simplejpeg
        (~1.5x PIL's draft mode, docs/benchmarks.md); anything else, or any doubt, goes through
        :func:`images.decode_full`, which also gives the errors."""
        quick = _simplejpeg(source, self.draft_size)
        if quick is not None:
            return self._resized(*quick)
        decoded = images.decode_full(source, name, self.draft_size)
        return self._resized(decoded.image, decoded.full_size, decoded.box)

    def process(self, image: Image.Image) -> np.ndarray:
        """Return the (3, H, W) float32 model input of an already decoded PIL image."""
        return self.normalize(self.process_uint8(image))

    def process_uint8(self, image: Image.Image) -> np.ndarray:
        """An already decoded PIL image resized and cropped, (H, W, 3) uint8."""
        image = images.to_rgb(image)
        return self._resized(image, image.size, None)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """(H, W, 3) or (n, H, W, 3) uint8 -> (3, H, W) or (n, 3, H, W) float32 ``pixel * mul + add``."""
        axes = (2, 0, 1) if pixels.ndim == 3 else (0, 3, 1, 2)
        out = np.ascontiguousarray(pixels.transpose(axes)).astype(np.float32)
        out *= self._mul
        out += self._add
        return out

    def _resized(self, image: Image.Image | np.ndarray, full_size, box) -> np.ndarray:
        """``image`` (PIL, or (H, W, 3) uint8 straight from a decoder) resized and cropped, (H, W, 3) uint8."""
        target = self.target_size(full_size)
        crop = self.spec.crop
        size = (image.shape[1], image.shape[0]) if isinstance(image, np.ndarray) else image.size
        if target is None or (target == size and box is None):
            arr = np.asarray(image, dtype=np.uint8)
        elif self.torch_resize and self.spec.resample in _TORCH_MODES and _whole_image(box, size):
            arr = _torch_resize(np.asarray(image, dtype=np.uint8), target, _TORCH_MODES[self.spec.resample])
        else:
            image = Image.fromarray(image) if isinstance(image, np.ndarray) else image
            box = box or (0.0, 0.0, float(image.width), float(image.height))
            if crop and crop[0] <= target[1] and crop[1] <= target[0]:
                box, target, crop = _crop_box(box, target, crop), crop[::-1], None
            arr = np.asarray(image.resize(target, resample=self.spec.resample, box=box), dtype=np.uint8)
        return _center_crop(arr, crop) if crop else arr


def make_preprocessor(processor, fast: bool = True, torch_resize: bool = True):
    """The fast path for ``processor`` when ``fast`` and its config allows it, else the processor path.

    ``torch_resize`` resizes with torch's kernel instead of PIL's where they agree: faster on a
    CPU box, slower with the many decode threads of a GPU box (docs/benchmarks.md).
    """
    if fast:
        spec = fast_spec(processor)
        if spec is not None:
            return FastPath(spec, torch_resize)
    return ProcessorPath(processor)


def fast_spec(processor) -> FastSpec | None:
    """A :class:`FastSpec` reproducing ``processor``, or ``None`` if it does anything else."""
    return None if unsupported_reason(processor) else _build_spec(processor)


def unsupported_reason(processor) -> str | None:
    """Why the fast path cannot reproduce ``processor`` (``None`` when it can)."""
    if not _is_generic(processor):
        return f"{type(processor).__name__} has its own preprocessing steps"
    for key, value in vars(processor).items():
        if key.startswith("do_") and key not in _HANDLED_FLAGS and value:
            return f"{key} is not supported"
    if getattr(processor, "do_resize", False):
        if _resample(getattr(processor, "resample", None)) is None:
            return f"resample {processor.resample!r} is not supported"
        if _size_kind(getattr(processor, "size", None)) is None:
            return f"size {processor.size!r} is not supported"
    if getattr(processor, "do_center_crop", False) and _size_kind(getattr(processor, "crop_size", None)) != "fixed":
        return f"crop_size {getattr(processor, 'crop_size', None)!r} is not supported"
    if getattr(processor, "do_normalize", False):
        if _channels(processor.image_mean) is None or _channels(processor.image_std) is None:
            return "image_mean/image_std must have 1 or 3 values"
    return None


def _build_spec(processor) -> FastSpec:
    fixed = edge = crop = None
    resample = Image.Resampling.BILINEAR
    if getattr(processor, "do_resize", False):
        fields = _size_fields(processor.size)
        if _size_kind(processor.size) == "fixed":
            fixed = (int(fields["height"]), int(fields["width"]))
        else:
            edge = int(fields["shortest_edge"])
        resample = _resample(processor.resample)
    if getattr(processor, "do_center_crop", False):
        fields = _size_fields(processor.crop_size)
        crop = (int(fields["height"]), int(fields["width"]))
    scale = float(processor.rescale_factor) if getattr(processor, "do_rescale", False) else 1.0
    mean, std = np.zeros(3), np.ones(3)
    if getattr(processor, "do_normalize", False):
        mean, std = np.asarray(_channels(processor.image_mean)), np.asarray(_channels(processor.image_std))
    mul, add = scale / std, -mean / std
    return FastSpec(fixed, edge, int(resample), crop, tuple(map(float, mul)), tuple(map(float, add)))


def _is_generic(processor) -> bool:
    cls = type(processor)
    if cls.__name__.removesuffix("Pil").removesuffix("Fast") in _GENERIC_NAMES:
        return True
    try:
        from transformers.image_processing_backends import PilBackend, TorchvisionBackend
    except ImportError:
        return False
    for backend in (PilBackend, TorchvisionBackend):
        if isinstance(processor, backend):
            return all(getattr(cls, m, None) is getattr(backend, m, None) for m in _PIPELINE_METHODS)
    return False


def _size_fields(size) -> dict:
    if isinstance(size, int):
        return {"height": size, "width": size}
    try:
        return {k: v for k, v in dict(size).items() if v is not None}
    except (TypeError, ValueError):
        return {}


def _size_kind(size) -> str | None:
    keys = set(_size_fields(size)) if size is not None else set()
    if keys == {"height", "width"}:
        return "fixed"
    if keys == {"shortest_edge"}:
        return "shortest_edge"
    return None


def _resample(value) -> int | None:
    if value is None:
        return int(Image.Resampling.BILINEAR)
    name = getattr(value, "value", None)
    if isinstance(name, str):
        return _INTERPOLATION_NAMES.get(name.lower())
    try:
        code = int(value)
    except (TypeError, ValueError):
        return None
    return code if 0 <= code <= 5 else None


def _channels(values) -> list[float] | None:
    if isinstance(values, (int, float)):
        return [float(values)] * 3
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return out * 3 if len(out) == 1 else out if len(out) == 3 else None


def _simplejpeg(source, draft_size: tuple[int, int] | None):
    """(RGB array, full size, box) of a plain upright JPEG decoded DCT-scaled to >= ``draft_size``, else None."""
    try:
        import simplejpeg
    except ImportError:
        return None
    data = source if isinstance(source, bytes) else _small_file(source)
    if data is None or not data.startswith(b"\xff\xd8"):
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if colorspace != "YCbCr" or width * height > images.MAX_PIXELS or not _upright(data):
            return None
        want = draft_size or (0, 0)
        if width < 2 * want[0] or height < 2 * want[1]:
            want = (width, height)  # as PIL's draft: reduce only by 2 or more
        rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=want[1], min_width=want[0])
    except (ValueError, RuntimeError, OSError):
        return None
    out_h, out_w = rgb.shape[:2]
    if (out_w, out_h) == (width, height):
        return rgb, (width, height), None
    for eighths in range(1, 9):  # libjpeg scales by M/8 and rounds up
        if (-(-width * eighths // 8), -(-height * eighths // 8)) == (out_w, out_h):
            return rgb, (width, height), (0.0, 0.0, width * eighths / 8, height * eighths / 8)
    return None


def _small_file(source, limit: int = 64 << 20) -> bytes | None:
    if not isinstance(source, (str, Path)):
        return None
    try:
        return read_regular_file(source, limit)
    except FileRefused:  # not a regular file, or larger: the general decoder says why
        return None


def _upright(data: bytes) -> bool:
    """Whether a JPEG needs no EXIF rotation (no EXIF, or orientation 1)."""
    if b"Exif" not in data[:65536]:
        return True
    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.getexif().get(0x0112, 1)) == 1
    except Exception:  # noqa: BLE001  unreadable EXIF: let the full decoder judge
        return False


def _whole_image(box, size: tuple[int, int]) -> bool:
    """Whether a draft ``box`` is exactly the decoded image (odd sizes leave a fractional edge)."""
    return box is None or tuple(map(float, box)) == (0.0, 0.0, float(size[0]), float(size[1]))


def _torch_resize(arr: np.ndarray, target: tuple[int, int], mode: str) -> np.ndarray:
    """Resize (H, W, 3) uint8 to ``target`` (width, height) with PIL-compatible antialiasing."""
    import torch

    tensor = torch.from_numpy(arr if arr.flags.writeable else arr.copy()).permute(2, 0, 1).unsqueeze(0)
    out = torch.nn.functional.interpolate(tensor, size=(target[1], target[0]), mode=mode,
                                          antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


def _crop_box(box, target: tuple[int, int], crop: tuple[int, int]):
    """Source box whose resize to ``crop`` equals resizing ``box`` to ``target`` then center cropping."""
    x0, y0, x1, y1 = box
    sx, sy = (x1 - x0) / target[0], (y1 - y0) / target[1]
    left, top = (target[0] - crop[1]) // 2, (target[1] - crop[0]) // 2
    return (x0 + left * sx, y0 + top * sy, x0 + (left + crop[1]) * sx, y0 + (top + crop[0]) * sy)


def _center_crop(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Center crop (H, W, C) like transformers: zero padding when the image is smaller."""
    crop_h, crop_w = size
    height, width = arr.shape[:2]
    if height < crop_h or width < crop_w:
        pad_h, pad_w = max(crop_h, height), max(crop_w, width)
        padded = np.zeros((pad_h, pad_w, arr.shape[2]), dtype=arr.dtype)
        top, left = -(-(pad_h - height) // 2), -(-(pad_w - width) // 2)
        padded[top:top + height, left:left + width] = arr
        arr, height, width = padded, pad_h, pad_w
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return arr[top:top + crop_h, left:left + crop_w]
