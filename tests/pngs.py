"""Write large, highly compressible PNGs without allocating their pixels (for decode-memory tests)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path: Path, width: int, height: int, bit_depth: int = 8, color_type: int = 0) -> Path:
    """A black ``width`` x ``height`` PNG, compressed row by row (a few hundred KB for 11000x11000)."""
    row = b"\x00" * (1 + width * _CHANNELS[color_type] * bit_depth // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat)
                           + _chunk(b"IEND", b""))
    return Path(path)
