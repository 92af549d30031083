"""Plain encode/decode with the embedded default model: exactness, determinism, every input kind."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.bitstream import BitstreamError, Container, Field, Section
from codec.coder import decode, decode_image, encode, encode_report, read_header
from codec.zoo import InvalidQualityError, ModelMismatchError, UnknownModelError
from tests.conftest import ROOT, synthetic_rgb


def test_round_trip_counts_every_byte(kodak_crop: np.ndarray) -> None:
    r = encode_report(Image.fromarray(kodak_crop), quality=3)
    h, w = kodak_crop.shape[:2]
    assert r.bpp == len(r.data) * 8 / (w * h)
    out = decode_image(r.data, bit_exact=True)  # the encoder verifies bit-exact
    assert out.rgb.shape == kodak_crop.shape
    assert np.array_equal(out.rgb, r.decoded.rgb)
    mse = np.mean((out.rgb.astype(float) - kodak_crop.astype(float)) ** 2)
    assert r.psnr == pytest.approx(10 * np.log10(255**2 / mse))


def test_rate_grows_with_quality(kodak_crop: np.ndarray) -> None:
    sizes = [len(encode(Image.fromarray(kodak_crop), quality=q)) for q in (1, 2.5, 4, 6)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_lambda_and_quality_are_exclusive(kodak_crop: np.ndarray) -> None:
    with pytest.raises(InvalidQualityError):
        encode(Image.fromarray(kodak_crop), quality=2, lmbda=0.01)
    with pytest.raises(InvalidQualityError):
        encode(Image.fromarray(kodak_crop), quality=7)
    a = read_header(encode(Image.fromarray(kodak_crop), lmbda=0.0067))
    assert a["quality"] == pytest.approx(3.0, abs=1e-3)


def test_decode_is_identical_with_one_and_two_threads(kodak_crop: np.ndarray) -> None:
    """Bit-exact decoding; the default (multi-threaded synthesis) may differ by one level at a few
    pixels between thread counts (codec.decoding, tests/test_decode_safety.py)."""
    data = encode(Image.fromarray(kodak_crop), quality=4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = decode_image(data, bit_exact=True).rgb
        torch.set_num_threads(2)
        b = decode_image(data, bit_exact=True).rgb
        enc2 = encode(Image.fromarray(kodak_crop), quality=4)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(a, b)
    assert enc2 == data  # the encoder is deterministic too
    assert torch.get_num_threads() == before  # settings restored


def test_decode_is_identical_in_a_fresh_process(tmp_path: Path, kodak_crop: np.ndarray) -> None:
    data = encode(Image.fromarray(kodak_crop), quality=2)
    here = decode_image(data, bit_exact=True).rgb
    (tmp_path / "x.udic").write_bytes(data)
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, torch
        sys.path.insert(0, {str(ROOT)!r})
        torch.set_num_threads(2)
        from codec.coder import decode_image
        img = decode_image(open({str(tmp_path / "x.udic")!r}, "rb").read(), bit_exact=True)
        np.save({str(tmp_path / "out.npy")!r}, img.rgb)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    assert np.array_equal(np.load(tmp_path / "out.npy"), here)


def test_alpha_is_kept_losslessly() -> None:
    rgb = synthetic_rgb(70, 90)
    alpha = np.zeros((70, 90), np.uint8)
    alpha[10:60, 20:80] = 255
    alpha[30:40] = 128
    data = encode(Image.fromarray(np.dstack([rgb, alpha])), quality=3)
    assert read_header(data)["alpha"] is True
    out = decode(data)
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out)[..., 3], alpha)


def test_grayscale_comes_back_grayscale() -> None:
    gray = synthetic_rgb(64, 64)[..., 1]
    out = decode(encode(Image.fromarray(gray), quality=5))
    assert out.mode == "L" and out.size == (64, 64)


@pytest.mark.parametrize("h,w", [(1, 1), (3, 200), (65, 129)])
def test_tiny_and_odd_sizes(h: int, w: int) -> None:
    rgb = synthetic_rgb(h, w)
    out = decode_image(encode(Image.fromarray(rgb), quality=6))
    assert out.rgb.shape == (h, w, 3)


def _rewrite(data: bytes, **changes: bytes) -> bytes:
    c = Container.from_bytes(data)
    for name, value in changes.items():
        c.fields[Field[name]] = value
    return c.to_bytes()


def test_wrong_weights_hash_is_refused(kodak_crop: np.ndarray) -> None:
    data = encode(Image.fromarray(kodak_crop), quality=3)
    with pytest.raises(ModelMismatchError, match="different weights"):
        decode(_rewrite(data, MODEL_HASH=b"\x00" * 8))


def test_unknown_model_is_refused_by_name(kodak_crop: np.ndarray) -> None:
    data = encode(Image.fromarray(kodak_crop), quality=3)
    with pytest.raises(UnknownModelError, match="acme-9000"):
        decode(_rewrite(data, MODEL_ID=b"acme-9000"))


def test_crafted_payload_with_valid_checksum_is_refused(kodak_crop: np.ndarray) -> None:
    data = encode(Image.fromarray(kodak_crop), quality=3)
    c = Container.from_bytes(data)
    for section in (Section.Y, Section.Z):
        for payload in (b"", b"\x01\x02\x03", bytes(reversed(c.sections[section]))):
            bad = Container(fields=dict(c.fields), sections=dict(c.sections))
            bad.sections[section] = payload
            with pytest.raises(BitstreamError):
                decode(bad.to_bytes())


def test_level_out_of_range_is_refused(kodak_crop: np.ndarray) -> None:
    data = encode(Image.fromarray(kodak_crop), quality=3)
    with pytest.raises(BitstreamError):
        decode(_rewrite(data, LEVEL=np.float32(40.0).tobytes()))
    with pytest.raises(BitstreamError):
        decode(_rewrite(data, LEVEL=np.float32(np.nan).tobytes()))
