"""Turn whatever image a user has into what the codec codes, and back.

The codec codes 8-bit RGB. Inputs are normalised here, with the choices written down:

* EXIF orientation is applied (the image is coded as it is meant to be seen).
* Grayscale (L, I;16, I, 1) is coded as RGB and marked, so decoding gives grayscale back.
* 16-bit samples are scaled to 8 bits (the codec is 8-bit).
* Palette and CMYK images are converted to RGB (palette transparency becomes alpha).
* **Alpha is kept, losslessly**: the alpha plane goes in its own zlib section and decoding
  returns RGBA. The colour under fully transparent pixels is still coded, as it is.

The pixel limit is checked from the header, before any pixel is decoded, and Pillow's
decompression-bomb warning is raised as an error. It counts the pixels the codec works on: each
side is padded to a multiple of :data:`PAD_MULTIPLE` before coding, so a 1x1,000,000 strip is
64 Mpixel of work, not 1 (:func:`check_pixel_limit`; decoding applies the same rule to the size a
bitstream claims). The limit is always a parameter here: the codec reads no environment.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000
#: the codec codes images padded (bottom/right) to a multiple of this on each side
PAD_MULTIPLE = 64
# Our own limit (checked from the header in open_image) replaces Pillow's global one, so the
# caller's max_pixels decides and the error names the real size.
Image.MAX_IMAGE_PIXELS = None
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "La"}


class ImageInputError(ValueError):
    """An input that is not an image we can code (unreadable, truncated, empty, too large)."""

    kind = "invalid-image"


class ImageTooLargeError(ImageInputError):
    kind = "image-too-large"


@dataclass
class CodecImage:
    """An image ready for the codec: RGB uint8 (H, W, 3), optional alpha (H, W), gray flag."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    grayscale: bool = False

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    def to_pil(self) -> Image.Image:
        """The decoded picture in the mode the source had (L/LA for gray, RGBA with alpha)."""
        if self.grayscale:
            gray = Image.fromarray(self.rgb).convert("L")
            if self.alpha is not None:
                gray.putalpha(Image.fromarray(self.alpha))
            return gray
        img = Image.fromarray(self.rgb)
        if self.alpha is not None:
            img.putalpha(Image.fromarray(self.alpha))
        return img

    def to_png(self) -> bytes:
        buf = io.BytesIO()
        self.to_pil().save(buf, format="PNG", compress_level=6)
        return buf.getvalue()


def padded_size(width: int, height: int, multiple: int = PAD_MULTIPLE) -> tuple[int, int]:
    """(width, height) rounded up to multiples of ``multiple``: the size the transforms run at."""
    return width + (-width) % multiple, height + (-height) % multiple


def check_pixel_limit(
    width: int, height: int, max_pixels: int, error: type[ImageInputError] = ImageTooLargeError
) -> None:
    """Refuse an image whose *padded* area exceeds ``max_pixels``.

    Why padded: memory and time follow the padded size, and a thin strip pads to 64 pixels across
    (1x1,000,000 is 64 Mpixel of work). ``error`` lets the decoder raise its own subclass (one that
    is also a bitstream error) with the same message."""
    pw, ph = padded_size(width, height)
    if width * height > max_pixels:
        raise error(f"image has {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}")
    if pw * ph > max_pixels:
        raise error(
            f"image has {width}x{height} pixels, {pw}x{ph} = {pw * ph} once padded to multiples of "
            f"{PAD_MULTIPLE} for coding, more than the limit of {max_pixels}"
        )


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.round(arr * (255.0 if arr.max(initial=0) <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
    # integer samples wider than 8 bits: treat as 16-bit full scale
    return np.clip(np.round(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def open_image(source: str | Path | bytes | Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image lazily and check its size from the header before any pixel is decoded."""
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, bytes | bytearray | memoryview):
            if len(source) == 0:
                raise ImageInputError("the image is empty (0 bytes)")
            fp: io.BytesIO | Path = io.BytesIO(bytes(source))
        else:
            fp = Path(source)
            if not fp.is_file():
                raise ImageInputError(f"no such file: {fp}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(fp)
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            if isinstance(exc, UnidentifiedImageError):
                raise ImageInputError("not a readable image (unknown or corrupt format)") from None
            raise ImageTooLargeError(f"image is too large ({exc})") from None
        except OSError as exc:
            raise ImageInputError(f"not a readable image ({exc})") from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageInputError("the image has no pixels")
    check_pixel_limit(w, h, max_pixels)
    return img


def load_image(source: str | Path | bytes | Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> CodecImage:
    """Decode any supported image into a :class:`CodecImage` (see the module notes)."""
    img = open_image(source, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return _normalise(img)
    except ImageInputError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise ImageInputError(f"the image could not be decoded ({exc})") from None


def _normalise(img: Image.Image) -> CodecImage:
    mode = img.mode
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in img.info
    grayscale = mode in GRAY_MODES
    alpha = None
    if has_alpha:
        if mode not in ("RGBA", "LA"):
            img = img.convert("LA" if grayscale else "RGBA")
        alpha = np.asarray(img.getchannel("A"), dtype=np.uint8).copy()
        if alpha.min() == 255:  # fully opaque: nothing to keep
            alpha = None
    if grayscale:
        base = img.getchannel("L") if img.mode in ("LA", "La") else img
        gray = _to_uint8(np.asarray(base))
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return CodecImage(rgb=np.ascontiguousarray(rgb), alpha=alpha, grayscale=grayscale)
