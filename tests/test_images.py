"""vss_core.files.images: robust decoding of every kind of file a user may drop in."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_models import encode, label_image
from vss_core.errors import ImageError
from vss_core.files import images

# stored image = INVERSE[o](upright) so that applying EXIF orientation o gives back the upright image
INVERSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def gradient(width=64, height=48) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) % 256], -1).astype(np.uint8)
    return Image.fromarray(arr)


def with_orientation(upright: Image.Image, orientation: int, fmt: str, **kwargs) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(upright.transpose(INVERSE[orientation]), fmt, exif=exif, **kwargs)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (with a token IDAT): enough to open it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_decode_path_bytes_and_file_object_agree(tmp_path):
    data = encode(gradient(), "PNG")
    path = tmp_path / "g.png"
    path.write_bytes(data)
    from_path = np.asarray(images.decode(path))
    assert images.decode(str(path)).mode == "RGB"
    assert np.array_equal(from_path, np.asarray(images.decode(data)))
    assert np.array_equal(from_path, np.asarray(images.decode(io.BytesIO(data))))
    assert np.array_equal(from_path, np.asarray(gradient()))


@pytest.mark.parametrize("mode", ["L", "1", "CMYK", "P", "I;16", "RGB"])
def test_modes_become_rgb(mode):
    source = gradient()
    if mode == "I;16":
        image = Image.fromarray((np.asarray(source.convert("L"), np.uint16) * 257).astype(np.uint16))
        assert image.mode == "I;16"
    else:
        image = source.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = images.decode(encode(image, fmt))
    assert decoded.mode == "RGB" and decoded.size == source.size
    if mode in ("L", "I;16"):
        arr = np.asarray(decoded)
        assert np.array_equal(arr[..., 0], np.asarray(source.convert("L")))
        assert np.array_equal(arr[..., 0], arr[..., 2])
    if mode == "CMYK":
        assert np.abs(np.asarray(decoded, float) - np.asarray(source, float)).mean() < 12


def test_sixteen_bit_and_float_scaled_to_eight_bit():
    wide = Image.fromarray(np.array([[0, 257 * 100, 65535]], np.uint16))
    assert np.asarray(images.to_rgb(wide))[0, :, 0].tolist() == [0, 100, 255]
    as_int = Image.fromarray(np.array([[0, 257 * 100, 65535]], np.int32))
    assert as_int.mode == "I"
    assert np.asarray(images.to_rgb(as_int))[0, :, 0].tolist() == [0, 100, 255]
    small_int = Image.fromarray(np.array([[0, 100, 255]], np.int32))
    assert np.asarray(images.to_rgb(small_int))[0, :, 0].tolist() == [0, 100, 255]
    unit_float = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert np.asarray(images.to_rgb(unit_float))[0, :, 0].tolist() == [0, 128, 255]
    png16 = images.decode(encode(wide, "PNG"))
    assert np.asarray(png16)[0, :, 1].tolist() == [0, 100, 255]


def test_transparency_composited_on_white():
    rgba = Image.new("RGBA", (4, 2), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    out = np.asarray(images.decode(encode(rgba, "PNG")))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert 120 <= out[0, 1, 0] <= 135 and out[0, 1, 0] == out[0, 1, 1]
    assert out[1, 1].tolist() == [255, 0, 0]
    la = images.decode(encode(Image.new("LA", (2, 2), (0, 0)), "PNG"))
    assert np.asarray(la).min() == 255


def test_palette_with_transparency():
    pal = Image.new("P", (3, 1), 0)
    pal.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    pal.putpixel((1, 0), 1)
    out = np.asarray(images.decode(encode(pal, "PNG", transparency=0)))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [0, 255, 0]
    gif = np.asarray(images.decode(encode(pal, "GIF", transparency=0)))
    assert gif[0, 0].tolist() == [255, 255, 255] and gif[0, 1].tolist() == [0, 255, 0]


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_applied(orientation):
    upright = gradient(64, 48)
    decoded = images.decode(with_orientation(upright, orientation, "PNG"))
    assert np.array_equal(np.asarray(decoded), np.asarray(upright))


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_draft_box_follows_orientation(orientation):
    upright = label_image("circles", 1, size=(643, 481))
    data = with_orientation(upright, orientation, "JPEG", quality=95) if orientation > 1 else encode(upright, quality=95)
    full = images.decode_full(data)
    drafted = images.decode_full(data, draft_size=(100, 100))
    assert full.full_size == drafted.full_size == (643, 481)
    assert full.box is None and drafted.box is not None
    assert drafted.image.width < 643 / 3
    exact = np.asarray(full.image.resize((120, 90), Image.Resampling.BILINEAR), float)
    fast = np.asarray(drafted.image.resize((120, 90), Image.Resampling.BILINEAR, box=drafted.box), float)
    assert np.abs(exact - fast).mean() < 1.5


def test_draft_reduces_only_jpegs():
    big = label_image("squares", 3, size=(640, 480))
    assert images.decode(encode(big), draft_size=(100, 100)).size == (160, 120)
    assert images.decode(encode(big), draft_size=(400, 400)).size == (640, 480)
    assert images.decode(encode(big, "PNG"), draft_size=(100, 100)).size == (640, 480)


def bad_files(tmp_path) -> dict:
    good = encode(label_image("stripes", 0), quality=90)
    png = encode(label_image("stripes", 1), "PNG")
    files = {
        "missing": tmp_path / "nope.jpg",
        "empty": tmp_path / "empty.jpg",
        "text": tmp_path / "notes.jpg",
        "truncated_jpeg": tmp_path / "cut.jpg",
        "truncated_png": tmp_path / "cut.png",
        "bomb": tmp_path / "bomb.png",
        "huge": tmp_path / "huge.png",
        "directory": tmp_path / "folder.jpg",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not an image\n" * 20)
    files["truncated_jpeg"].write_bytes(good[: len(good) // 2])
    files["truncated_png"].write_bytes(png[: len(png) // 2])
    files["bomb"].write_bytes(png_header(20000, 20000))
    files["huge"].write_bytes(png_header(12000, 12000))
    files["directory"].mkdir()
    return files


EXPECTED_REASON = {
    "missing": "not found", "empty": "empty", "text": "not an image", "truncated_jpeg": "truncated",
    "truncated_png": "truncated", "bomb": "decompression bomb", "huge": "decompression bomb",
    "directory": "not a regular file",
}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bad_files_raise_image_error(tmp_path):
    for kind, path in bad_files(tmp_path).items():
        with pytest.raises(ImageError) as info:
            images.decode(path)
        assert info.value.source == str(path), kind
        assert EXPECTED_REASON[kind] in info.value.reason, (kind, info.value.reason)
        assert str(path) in str(info.value)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_bomb_warning_as_error_is_image_error():
    with pytest.raises(ImageError, match="decompression bomb"):
        images.decode(png_header(12000, 12000), name="upload.png")


def test_bytes_errors_name_the_upload():
    with pytest.raises(ImageError) as info:
        images.decode(b"", name="photo.jpg")
    assert info.value.source == "photo.jpg" and "empty" in info.value.reason
    with pytest.raises(ImageError) as info:
        images.decode(b"GIF89a garbage")
    assert info.value.source == "<bytes>"
    with pytest.raises(ImageError, match="unsupported source"):
        images.decode(12345)


def test_max_pixels_is_set():
    assert Image.MAX_IMAGE_PIXELS == images.MAX_PIXELS
    assert 50_000_000 <= images.MAX_PIXELS <= 200_000_000
