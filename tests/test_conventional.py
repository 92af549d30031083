"""One tiny run of every conventional codec wrapper: pixels come back, bytes are the file's."""

from __future__ import annotations

import numpy as np
import pytest

from codec.evaluation.conventional import CODECS, rgb_to_ycbcr, run_point, ycbcr_to_rgb
from codec.metrics import psnr
from tests.conftest import synthetic_rgb

RGB = synthetic_rgb(64, 64, seed=3)


@pytest.mark.parametrize("name", sorted(CODECS))
def test_wrapper_round_trip(name: str) -> None:
    codec = CODECS[name]
    setting = codec.settings[len(codec.settings) // 2]
    data, decoded = run_point(codec, RGB, setting)
    assert isinstance(data, bytes) and len(data) > 0
    assert decoded.shape == RGB.shape and decoded.dtype == np.uint8
    assert psnr(RGB, decoded) > 22.0  # really decoded, not a blank image
    bpp = len(data) * 8 / (64 * 64)
    assert 0.01 < bpp < 24.0
    assert codec.describe(setting)


@pytest.mark.parametrize("name", ["jpeg420", "hevc444", "vvc420"])
def test_rate_grows_along_the_sweep(name: str) -> None:
    codec = CODECS[name]
    low, _ = run_point(codec, RGB, codec.settings[0])
    high, _ = run_point(codec, RGB, codec.settings[-1])
    assert len(low) < len(high)


def test_odd_sizes_survive_ffmpeg_padding() -> None:
    rgb = synthetic_rgb(37, 51)
    for name in ("hevc444", "vvc420"):
        _, decoded = run_point(CODECS[name], rgb, 22)
        assert decoded.shape == rgb.shape and psnr(rgb, decoded) > 28


def test_colour_conversion_round_trips() -> None:
    assert np.abs(ycbcr_to_rgb(rgb_to_ycbcr(RGB)).astype(int) - RGB).max() <= 1
