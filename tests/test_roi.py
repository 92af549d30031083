"""``codec.roi``: weight maps from masks, rectangles or the image itself, and their effect on the encode.

What matters: every bad mask or weight is a RoiError (the API's 4xx, the CLI's exit 2) before any
work; the map is normalised; and the region really gets the bits (PSNR inside goes up).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.coder import decode_image, load_input
from codec.pipeline import EncodeRequest, encode
from codec.roi import (
    MAX_RECTS,
    Rect,
    RoiError,
    RoiSpec,
    auto_weights,
    normalised,
    pack_grid,
    parse_rects,
    unpack_grid,
    weights_from_mask,
    weights_from_rects,
)
from tests.conftest import synthetic_rgb
from tests.test_cli import udic


def png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def test_mask_grey_is_the_weight() -> None:
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:15] = 255
    mask[0, 0] = 128
    w = weights_from_mask(png(mask), 30, 20)
    assert w.shape == (20, 30) and w[6, 6] == pytest.approx(1.0) and w[0, 0] == pytest.approx(128 / 255)
    assert w[15, 25] == 0.0
    rgb = np.stack([mask] * 3, -1)
    assert np.allclose(weights_from_mask(png(rgb), 30, 20), w, atol=1e-3)  # colour masks read as luma


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (png(np.zeros((20, 31), np.uint8) + 9), "must match"),
        (png(np.zeros((20, 30, 3), np.uint8), "JPEG"), "must be a PNG"),
        (b"\x89PNG\r\n\x1a\nnot really", "not a usable PNG"),
        (b"", "must be a PNG"),
    ],
)
def test_bad_masks_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(RoiError, match=match):
        weights_from_mask(data, 30, 20)


def test_weights_are_normalised_and_checked() -> None:
    w = normalised(np.array([[1.0, 3.0]]))
    assert w.mean() == pytest.approx(1.0) and w[0, 1] == pytest.approx(3 * w[0, 0])
    for bad in (np.zeros((2, 2)), np.array([[1.0, -1.0]]), np.array([[np.nan, 1.0]]), np.array([[np.inf, 1.0]])):
        with pytest.raises(RoiError):
            normalised(bad)
    with pytest.raises(RoiError, match="all zero"):
        RoiSpec.from_mask_as_grid(png(np.zeros((8, 8), np.uint8)), 8, 8)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "{}",
        "[]",
        '[{"x": 0, "y": 0, "w": 4, "h": 4, "weight": NaN}]',
        '[{"x": 0, "y": 0, "w": 4, "h": 4, "weight": Infinity}]',
        '[{"x": 0, "y": 0, "w": 4, "h": 4, "weight": -1}]',
        '[{"x": 0, "y": 0, "w": 4, "h": 4, "weight": 1000}]',
        '[{"x": 0, "y": 0, "w": 0, "h": 4}]',
        '[{"x": -1, "y": 0, "w": 4, "h": 4}]',
        '[{"x": "a", "y": 0, "w": 4, "h": 4}]',
        '[{"x": 0, "y": 0, "w": 4}]',
        '[{"x": 0, "y": 0, "w": 4, "h": 4, "colour": 1}]',
        "[1, 2]",
        "[" * 100000,
        "[" + ",".join(['{"x": 0, "y": 0, "w": 1, "h": 1}'] * (MAX_RECTS + 1)) + "]",
    ],
)
def test_bad_rectangles_are_refused(text: str) -> None:
    with pytest.raises(RoiError):
        parse_rects(text)


def test_rectangles_over_a_background_of_one() -> None:
    rects = parse_rects(
        '[{"x": 2, "y": 1, "w": 3, "h": 2, "weight": 5}, {"x": 4, "y": 1, "w": 9, "h": 1, "weight": 0.5}]'
    )
    w = weights_from_rects(rects, 10, 4)
    assert w[0, 0] == 1.0 and w[1, 2] == 5.0 and w[1, 4] == 5.0 and w[1, 6] == 0.5 and w[2, 4] == 5.0
    with pytest.raises(RoiError, match="inside"):
        weights_from_rects((Rect(50, 50, 2, 2, 3.0),), 10, 4)


def test_auto_weights_favour_text_like_detail() -> None:
    rgb = np.full((64, 128, 3), 200, np.uint8)
    rgb[16:48, 70:120:3] = 10  # dense vertical strokes, like text
    rgb[:, :40] = np.linspace(0, 255, 40, dtype=np.uint8)[None, :, None]  # a smooth gradient
    w = auto_weights(rgb)
    assert w[32, 95] > 3.5 and w[32, 20] == pytest.approx(1.0) and w[5, 60] == pytest.approx(1.0)
    assert w.min() >= 1.0 and w.max() <= 4.0


def test_block_map_round_trip_and_payload_text() -> None:
    mask = np.zeros((40, 50), np.uint8)
    mask[8:24, 16:40] = 255
    spec = RoiSpec.from_mask_as_grid(png(mask), 50, 40)
    img = load_input(Image.fromarray(synthetic_rgb(40, 50, seed=1)))
    again = RoiSpec.from_json(spec.to_json())
    assert np.allclose(again.weights(img), normalised(weights_from_mask(png(mask), 50, 40)), atol=0.02)
    data, gw, gh = pack_grid(np.ones((40, 50), np.float32))
    with pytest.raises(RoiError, match="does not fit"):
        unpack_grid(data, gw, gh, 90, 40)
    with pytest.raises(RoiError, match="corrupt"):
        unpack_grid(b"garbage", gw, gh, 50, 40)
    with pytest.raises(RoiError, match="corrupt"):
        RoiSpec.from_json('{"grid": 5}')
    rects = RoiSpec("rects", rects=(Rect(1, 2, 3, 4, 2.0),))
    assert RoiSpec.from_json(rects.to_json()) == rects and RoiSpec.from_json("auto") == RoiSpec("auto")


def test_roi_needs_an_adaptive_encode() -> None:
    picture = Image.fromarray(synthetic_rgb(32, 32, seed=2))
    with pytest.raises(RoiError, match="adaptation"):
        encode(picture, EncodeRequest(quality=3, roi=RoiSpec("auto")))


def test_region_gets_the_bits() -> None:
    """Same level, same refinement: weight 8 on the left half raises its PSNR against no region."""
    rgb = synthetic_rgb(64, 64, seed=7)
    img = load_input(Image.fromarray(rgb))
    left = RoiSpec("rects", rects=(Rect(0, 0, 32, 64, 8.0),))
    psnr = {}
    for name, roi in (("none", None), ("left", left)):
        req = EncodeRequest(quality=3, adaptation="fast", latent_iters=40, decoder_iters=0, roi=roi)
        out = encode(img, req, device=torch.device("cpu"))
        dec = decode_image(out.data).rgb.astype(float)
        err = (dec - rgb.astype(float)) ** 2
        psnr[name] = (10 * np.log10(255**2 / err[:, :32].mean()), 10 * np.log10(255**2 / err[:, 32:].mean()))
        if roi is not None:
            assert out.metrics()["roi"] == "rects" and out.choice != "plain"
    assert psnr["left"][0] > psnr["none"][0] + 0.1  # inside better
    assert psnr["left"][1] < psnr["none"][1]  # paid for outside


def test_cli_roi_options(tmp_path: Path) -> None:
    src, out = tmp_path / "p.png", tmp_path / "p.udic"
    Image.fromarray(synthetic_rgb(48, 64, seed=3)).save(src)
    fast = ["--adapt", "fast", "--latent-iters", "3", "--decoder-iters", "0"]
    proc = udic("encode", src, "-o", out, *fast, "--roi-rects", '[{"x": 0, "y": 0, "w": 20, "h": 20, "weight": 5}]')
    assert proc.returncode == 0, proc.stderr
    assert decode_image(out.read_bytes()).rgb.shape == (48, 64, 3)
    mask = tmp_path / "m.png"
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(mask)
    assert udic("encode", src, "-o", out, *fast, "--roi-mask", mask).returncode == 0
    small = tmp_path / "small.png"
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(small)
    for bad in (
        ["--roi", "auto"],  # no --adapt
        [*fast, "--roi-mask", small],
        [*fast, "--roi-mask", tmp_path / "missing.png"],
        [*fast, "--roi-rects", '[{"x": 0, "y": 0, "w": 4, "h": 4, "weight": -1}]'],
    ):
        proc = udic("encode", src, "-o", tmp_path / "x.udic", *bad)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "udic: error:" in proc.stderr, proc.stderr
