"""Input normalisation: every image kind a user may have, and bad input refused clearly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from codec.imageio import ImageInputError, ImageTooLargeError, load_image
from tests.conftest import synthetic_rgb
from tests.imagefactory import encode_as, exif_rotated_jpeg, png_bytes, raw_png, rgb16_png

RGB = synthetic_rgb(40, 56)


def test_rgb_png_is_exact() -> None:
    img = load_image(png_bytes(Image.fromarray(RGB)))
    assert np.array_equal(img.rgb, RGB) and img.alpha is None and not img.grayscale


def test_grayscale_is_marked_and_replicated() -> None:
    gray = RGB[..., 0]
    img = load_image(png_bytes(Image.fromarray(gray)))
    assert img.grayscale
    assert np.array_equal(img.rgb[..., 0], gray) and np.array_equal(img.rgb[..., 2], gray)
    assert img.to_pil().mode == "L"


def test_16bit_gray_is_scaled_not_clipped() -> None:
    arr = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    img = load_image(png_bytes(Image.fromarray(arr)))  # uint16 -> I;16
    assert img.grayscale
    assert img.rgb[0, :, 0].tolist() == [0, 1, 128, 255]


def test_16bit_rgb_keeps_high_bytes() -> None:
    arr16 = (RGB.astype(np.uint16) << 8) | 0x7F
    img = load_image(rgb16_png(arr16))
    assert np.abs(img.rgb.astype(int) - RGB.astype(int)).max() <= 1


def test_alpha_is_kept_exactly() -> None:
    alpha = (np.arange(40 * 56).reshape(40, 56) % 256).astype(np.uint8)
    rgba = np.dstack([RGB, alpha])
    img = load_image(png_bytes(Image.fromarray(rgba)))
    assert np.array_equal(img.alpha, alpha)
    assert img.to_pil().mode == "RGBA"


def test_opaque_alpha_is_dropped_as_redundant() -> None:
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])
    assert load_image(png_bytes(Image.fromarray(rgba))).alpha is None


def test_palette_with_transparency_becomes_rgba() -> None:
    pal = Image.fromarray(RGB).quantize(16)
    pal.info["transparency"] = 0
    img = load_image(png_bytes(pal, transparency=0))
    assert img.alpha is not None and set(np.unique(img.alpha)) <= {0, 255}
    assert (img.alpha == 0).any()


def test_cmyk_jpeg_converts() -> None:
    data = encode_as(Image.fromarray(RGB).convert("CMYK"), "JPEG", quality=95)
    img = load_image(data)
    assert img.rgb.shape == RGB.shape
    assert np.abs(img.rgb.astype(int) - RGB.astype(int)).mean() < 12


@pytest.mark.parametrize("orientation,shape", [(1, (40, 56)), (6, (56, 40)), (3, (40, 56)), (8, (56, 40))])
def test_exif_orientation_is_applied(orientation: int, shape: tuple[int, int]) -> None:
    img = load_image(exif_rotated_jpeg(RGB, orientation))
    assert img.rgb.shape[:2] == shape


@pytest.mark.parametrize("fmt,kw", [("WEBP", {"lossless": True}), ("TIFF", {}), ("BMP", {})])
def test_other_lossless_formats(fmt: str, kw: dict) -> None:
    assert np.array_equal(load_image(encode_as(Image.fromarray(RGB), fmt, **kw)).rgb, RGB)


def test_tiny_and_odd_sizes() -> None:
    for h, w in [(1, 1), (1, 7), (33, 65)]:
        arr = synthetic_rgb(h, w)
        assert np.array_equal(load_image(png_bytes(Image.fromarray(arr))).rgb, arr)


def test_header_bomb_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLargeError, match="20000x20000"):
        load_image(raw_png(20000, 20000, 8, 2, b"\x00" * 4096))


def test_pixel_limit_is_configurable() -> None:
    data = png_bytes(Image.fromarray(RGB))
    with pytest.raises(ImageTooLargeError):
        load_image(data, max_pixels=100)


@pytest.mark.parametrize("data", [b"", b"hello world", b"\x89PNG\r\n\x1a\n", b"GIF89a\x00"])
def test_non_images_refused(data: bytes) -> None:
    with pytest.raises(ImageInputError):
        load_image(data)


def test_truncated_png_refused() -> None:
    data = png_bytes(Image.fromarray(synthetic_rgb(200, 200)))
    with pytest.raises(ImageInputError):
        load_image(data[: len(data) // 2])
