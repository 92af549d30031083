"""Conventional codecs for comparison, all from PyPI (no apt), each with its exact settings.

Every wrapper turns an RGB uint8 image into the bytes of a real file at one setting and decodes
them back to RGB uint8; bpp counts all bytes of that file. PSNR is computed by the caller on
8-bit RGB, the same definition as for our codec.

| name       | library                        | settings                                              |
|------------|--------------------------------|-------------------------------------------------------|
| jpeg420    | Pillow (libjpeg-turbo)          | quality q, 4:2:0 (Pillow's default), optimize         |
| jpeg444    | Pillow                          | quality q, subsampling 4:4:4, optimize                |
| webp       | Pillow (libwebp)                | quality q, method 6                                   |
| jpeg2000   | Pillow (OpenJPEG)               | irreversible 9/7 + colour transform, rate-controlled to a target bpp |
| avif444    | Pillow 13 (libavif)             | quality q, 4:4:4, speed 4, full range, tune=psnr (aom)|
| jpegxl     | imagecodecs (libjxl)            | distance d, effort 7                                  |
| hevc444    | FFmpeg libx265 (imageio-ffmpeg) | intra, fixed QP, tune psnr, BT.601 full-range YCbCr 4:4:4 8-bit |
| vvc420     | FFmpeg libvvenc (imageio-ffmpeg)| intra, fixed QP, qpa 0, 4:2:0 10-bit (libvvenc's only format) |
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Codec:
    name: str
    settings: tuple[float, ...]  # the sweep, low rate to high rate
    describe: Callable[[float], str]  # exact settings of one point, for the CSV
    encode: Callable[[np.ndarray, float], bytes]
    decode: Callable[[bytes, int, int], np.ndarray]
    note: str = ""


# ---------------------------------------------------------------------------- Pillow formats
def _pil_encode(fmt: str, **fixed: object) -> Callable[[np.ndarray, float], bytes]:
    def enc(rgb: np.ndarray, q: float) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt, quality=int(q), **fixed)
        return buf.getvalue()

    return enc


def _pil_decode(data: bytes, w: int, h: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _j2k_encode(rgb: np.ndarray, bpp: float) -> bytes:
    ratio = 24.0 / bpp  # compression ratio for a target rate (24 bits per RGB pixel uncompressed)
    buf = io.BytesIO()
    # mct=1: the colour transform (Pillow's default is none, which costs ~5 dB at 1.5 bpp)
    Image.fromarray(rgb).save(
        buf, format="JPEG2000", irreversible=True, mct=1, quality_mode="rates", quality_layers=[ratio], no_jp2=True
    )
    return buf.getvalue()


def _avif_encode(rgb: np.ndarray, q: float) -> bytes:
    buf = io.BytesIO()
    opts: dict[str, object] = {"quality": int(q), "subsampling": "4:4:4", "speed": 4, "range": "full"}
    try:
        Image.fromarray(rgb).save(buf, format="AVIF", codec="aom", advanced={"tune": "psnr"}, **opts)
    except (ValueError, OSError):  # libavif built without aom: its default encoder, no tune
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="AVIF", **opts)
    return buf.getvalue()


# ---------------------------------------------------------------------------- JPEG XL
def _jxl_encode(rgb: np.ndarray, distance: float) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.jpegxl_encode(rgb, distance=float(distance), effort=7))


def _jxl_decode(data: bytes, w: int, h: int) -> np.ndarray:
    import imagecodecs

    out = np.asarray(imagecodecs.jpegxl_decode(data))
    return out[..., :3].astype(np.uint8) if out.ndim == 3 else np.repeat(out[..., None], 3, axis=2)


# ---------------------------------------------------------------------------- FFmpeg (HEVC, VVC)
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """BT.601 full range, float64 (the conversion of the VVC 4:4:4 reference results)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 + (b - y) / 1.772
    cr = 128.0 + (r - y) / 1.402
    return np.stack([y, cb, cr], axis=-1)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    y, cb, cr = (ycc[..., i].astype(np.float64) for i in range(3))
    r = y + 1.402 * (cr - 128.0)
    b = y + 1.772 * (cb - 128.0)
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return np.clip(np.round(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def _run(args: list[str], stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(args, input=stdin, capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr.decode(errors='replace')[-400:]}")
    return proc.stdout


def _pad_even(a: np.ndarray, multiple: int) -> np.ndarray:
    h, w = a.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    return np.pad(a, ((0, ph), (0, pw), (0, 0)), mode="edge") if (ph or pw) else a


def _ffmpeg_encode(planar: bytes, pix_fmt: str, width: int, height: int, codec_args: list[str], fmt: str) -> bytes:
    """One raw frame in, the codec's elementary stream out (its bytes are the file we count)."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, f"x.{fmt}")
        args = [
            ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "rawvideo",
            "-pix_fmt",
            pix_fmt,
            "-s",
            f"{width}x{height}",
            "-i",
            "-",
            "-frames:v",
            "1",
            *codec_args,
            "-f",
            fmt,
            out,
        ]
        _run(args, planar)
        with open(out, "rb") as f:
            return f.read()


def _hevc_encode(rgb: np.ndarray, qp: float) -> bytes:
    ycc = np.clip(np.round(rgb_to_ycbcr(_pad_even(rgb, 2))), 0, 255).astype(np.uint8)
    planar = np.ascontiguousarray(ycc.transpose(2, 0, 1)).tobytes()
    x265 = [
        "-c:v",
        "libx265",
        "-preset",
        "medium",
        "-tune",
        "psnr",
        "-x265-params",
        f"qp={int(qp)}:keyint=1:log-level=error:range=full",
    ]
    return _ffmpeg_encode(planar, "yuv444p", ycc.shape[1], ycc.shape[0], x265, "hevc")


def _vvc_encode(rgb: np.ndarray, qp: float) -> bytes:
    ycc = rgb_to_ycbcr(_pad_even(rgb, 8))
    hp, wp = ycc.shape[:2]
    y10 = np.clip(np.round(ycc[..., 0] * 4), 0, 1023).astype("<u2")
    # 4:2:0: average each 2x2 block of the chroma planes
    c = ycc[..., 1:].reshape(hp // 2, 2, wp // 2, 2, 2).mean(axis=(1, 3))
    c10 = np.clip(np.round(c * 4), 0, 1023).astype("<u2")
    planar = y10.tobytes() + np.ascontiguousarray(c10[..., 0]).tobytes() + np.ascontiguousarray(c10[..., 1]).tobytes()
    vvenc = ["-c:v", "libvvenc", "-qp", str(int(qp)), "-qpa", "0", "-preset", "1"]
    return _ffmpeg_encode(planar, "yuv420p10le", wp, hp, vvenc, "vvc")


def _ffmpeg_decode(fmt: str, pix_fmt: str) -> Callable[[bytes, int, int], np.ndarray]:
    def dec(data: bytes, w: int, h: int) -> np.ndarray:
        raw = _run(
            [ffmpeg_exe(), "-v", "error", "-f", fmt, "-i", "-", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"], data
        )
        if pix_fmt == "yuv444p":
            hp, wp = h + h % 2, w + w % 2
            planes = np.frombuffer(raw, np.uint8)[: 3 * hp * wp].reshape(3, hp, wp).astype(np.float64)
        else:  # yuv420p10le
            hp, wp = h + (-h) % 8, w + (-w) % 8
            a = np.frombuffer(raw, "<u2").astype(np.float64) / 4.0
            y = a[: hp * wp].reshape(hp, wp)
            cs = (hp // 2) * (wp // 2)
            cb = a[hp * wp : hp * wp + cs].reshape(hp // 2, wp // 2).repeat(2, 0).repeat(2, 1)
            cr = a[hp * wp + cs : hp * wp + 2 * cs].reshape(hp // 2, wp // 2).repeat(2, 0).repeat(2, 1)
            planes = np.stack([y, cb, cr])
        return ycbcr_to_rgb(planes.transpose(1, 2, 0))[:h, :w]

    return dec


# ---------------------------------------------------------------------------- the list
CODECS: dict[str, Codec] = {
    c.name: c
    for c in [
        Codec(
            "jpeg420",
            (5, 10, 20, 30, 50, 70, 85, 95),
            lambda q: f"Pillow JPEG quality={q:g} subsampling=4:2:0 optimize",
            _pil_encode("JPEG", optimize=True),
            _pil_decode,
        ),
        Codec(
            "jpeg444",
            (5, 10, 20, 30, 50, 70, 85, 95),
            lambda q: f"Pillow JPEG quality={q:g} subsampling=4:4:4 optimize",
            _pil_encode("JPEG", optimize=True, subsampling=0),
            _pil_decode,
        ),
        Codec(
            "webp",
            (5, 15, 30, 50, 70, 85, 95),
            lambda q: f"Pillow WebP quality={q:g} method=6",
            _pil_encode("WEBP", method=6),
            _pil_decode,
        ),
        Codec(
            "jpeg2000",
            (0.1, 0.2, 0.4, 0.7, 1.0, 1.5, 2.5),
            lambda b: f"Pillow/OpenJPEG 9/7 mct=1 rate target {b:g} bpp",
            _j2k_encode,
            _pil_decode,
        ),
        Codec(
            "avif444",
            (20, 35, 50, 65, 80, 90),
            lambda q: f"Pillow AVIF quality={q:g} subsampling=4:4:4 speed=4 tune=psnr",
            _avif_encode,
            _pil_decode,
        ),
        Codec(
            "jpegxl",
            (8.0, 5.0, 3.0, 2.0, 1.3, 0.8, 0.4),
            lambda d: f"imagecodecs JPEG XL distance={d:g} effort=7",
            _jxl_encode,
            _jxl_decode,
        ),
        Codec(
            "hevc444",
            (42, 37, 32, 27, 22),
            lambda q: f"x265 intra qp={q:g} preset=medium tune=psnr YCbCr 4:4:4 BT.601 full",
            _hevc_encode,
            _ffmpeg_decode("hevc", "yuv444p"),
        ),
        Codec(
            "vvc420",
            (42, 37, 32, 27, 22),
            lambda q: f"vvenc intra qp={q:g} qpa=0 preset=1 YCbCr 4:2:0 10-bit BT.601 full",
            _vvc_encode,
            _ffmpeg_decode("vvc", "yuv420p10le"),
            note="4:2:0 10-bit only (libvvenc)",
        ),
    ]
}


def run_point(codec: Codec, rgb: np.ndarray, setting: float) -> tuple[bytes, np.ndarray]:
    """(file bytes, decoded RGB) for one setting."""
    data = codec.encode(rgb, setting)
    h, w = rgb.shape[:2]
    return data, codec.decode(data, w, h)


def available(names: Sequence[str] | None = None) -> list[Codec]:
    return [CODECS[n] for n in (names or CODECS)]
