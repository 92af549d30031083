"""Real image files of every awkward kind, written with Pillow or by hand (raw PNG chunks)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def png_bytes(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def encode_as(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes | None) -> bytes:
    """A PNG written chunk by chunk; ``rows=None`` writes only the header (a 'bomb' header)."""
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    if rows is not None:
        out += _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")
    return out


def rgb16_png(arr16: np.ndarray) -> bytes:
    """48-bit RGB PNG from an (H, W, 3) uint16 array."""
    h, w, _ = arr16.shape
    rows = b"".join(b"\x00" + arr16[y].astype(">u2").tobytes() for y in range(h))
    return raw_png(w, h, 16, 2, rows)


def exif_rotated_jpeg(rgb: np.ndarray, orientation: int) -> bytes:
    img = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode_as(img, "JPEG", quality=95, exif=exif.tobytes())
