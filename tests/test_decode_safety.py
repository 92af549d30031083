"""Decode hardening (issue 12): what a crafted bitstream may cost, the padded pixel limit, and the
fast (multi-threaded) synthesis against the bit-exact one.

The crafted-file tests assert on the work avoided (which decode stages ran), not on wall time."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import codec.decoding as decoding
from codec.bitstream import BitstreamError, BitstreamTooLargeError, Container, Section
from codec.coder import encode_report
from codec.determinism import canonical_compute
from codec.evaluation.decode_safety import crafted
from codec.imageio import ImageTooLargeError, load_image
from codec.zoo import default_registry
from codec.zoo.decompress import padded_strings
from tests.conftest import synthetic_rgb

CLAIM = (4032, 3024)  # inside the default limit: only the z floor can refuse it


@pytest.fixture(scope="module")
def small() -> bytes:
    return encode_report(Image.fromarray(synthetic_rgb(96, 128, seed=5)), quality=3).data


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Counts of the expensive decode stages that ran (the functions stay the real ones)."""
    calls = {"resolve_model": 0, "entropy_decode": 0, "decode_indexed": 0, "synthesize": 0, "synthesize_pixels": 0}

    def counted(name: str) -> Any:
        real = getattr(decoding, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    for name in calls:
        monkeypatch.setattr(decoding, name, counted(name))
    yield calls


def test_size_rewritten_past_the_limit_is_refused_before_the_model_is_loaded(
    small: bytes, stages: dict[str, int]
) -> None:
    """The issue's file: 8192x6100 pads to 8192x6144 = 50.3 M > 50 M."""
    with pytest.raises(BitstreamTooLargeError, match="8192x6144") as info:
        decoding.decode_image(crafted(small, (8192, 6100)))
    assert isinstance(info.value, ImageTooLargeError) and info.value.kind == "image-too-large"
    assert stages["resolve_model"] == 0 and stages["entropy_decode"] == 0


def test_size_rewritten_inside_the_limit_is_refused_before_entropy_decoding(
    small: bytes, stages: dict[str, int]
) -> None:
    with pytest.raises(BitstreamError, match="z section has") as info:
        decoding.decode_image(crafted(small, CLAIM))
    assert info.value.kind == "invalid-bitstream"
    assert stages["entropy_decode"] == 0 and stages["synthesize_pixels"] == 0


def test_z_padded_to_the_floor_costs_entropy_decoding_only(small: bytes, stages: dict[str, int]) -> None:
    """Past the floor, the symbol hash refuses it: y was decoded, the synthesis never ran."""
    with pytest.raises(BitstreamError, match="does not decode to what was encoded"):
        decoding.decode_image(crafted(small, (1024, 768), pad_z=True))
    assert stages["entropy_decode"] == 1 and stages["synthesize_pixels"] == 0


@pytest.mark.parametrize("value,size,quality", [(0, 512, 1), (255, 256, 1), (128, 64, 1), (None, 96, 6)])
def test_z_floor_never_refuses_a_real_file(value: int | None, size: int, quality: float) -> None:
    """Flat images at the lowest rate code z closest to the floor."""
    rgb = synthetic_rgb(size, size) if value is None else np.full((size, size, 3), value, np.uint8)
    data = encode_report(Image.fromarray(rgb), quality=quality).data
    net = default_registry().get("default").net
    shape = (-(-size // 64), -(-size // 64))
    floor = decoding.min_z_bytes(net, shape)
    assert len(Container.from_bytes(data).sections[Section.Z]) >= floor
    assert floor > 0 or size < 128  # the bound is real from 2x2 z positions on


def test_chunked_y_decoding_gives_compressais_symbols(small: bytes) -> None:
    base = default_registry().get("default")
    net: Any = base.net
    c = Container.from_bytes(small)
    shape = (2, 2)
    strings = padded_strings(net, [[c.sections[Section.Y]], [c.sections[Section.Z]]], shape)
    with canonical_compute():
        z_hat = net.entropy_bottleneck.decompress(strings[1], shape)
        indexes = net.gaussian_conditional.build_indexes(net.entropy_params(z_hat, base.level_tensor(2.0)).scales)
        whole = net.gaussian_conditional.decompress(strings[0], indexes)
        chunked = decoding.decode_indexed(net.gaussian_conditional, strings[0][0], indexes, chunk=1000)
    assert chunked.dtype == torch.int32 and torch.equal(chunked.float(), whole)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_bit_exact_decode_is_the_previous_decode(mode: str) -> None:
    """Old files decode to the same pixels: the staged decode against the model's one-call decode."""
    img = Image.fromarray(synthetic_rgb(45, 53, seed=1)).convert(mode)
    data = encode_report(img, quality=3.5).data
    base = default_registry().get("default")
    c = Container.from_bytes(data)
    with canonical_compute():
        x_hat, _ = base.decompress([[c.sections[Section.Y]], [c.sections[Section.Z]]], (1, 1), 2.5)
    expected = decoding.to_uint8(x_hat[..., :45, :53])
    assert np.array_equal(decoding.decode_image(data, bit_exact=True).rgb, expected)


def test_fast_decode_differs_from_bit_exact_by_at_most_one_level() -> None:
    data = encode_report(Image.fromarray(synthetic_rgb(128, 192, seed=7)), quality=4).data
    exact = decoding.decode_image(data, bit_exact=True).rgb.astype(int)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        fast = decoding.decode_image(data).rgb.astype(int)
    finally:
        torch.set_num_threads(threads)
    assert np.abs(fast - exact).max() <= 1


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_thin_strip_counts_its_padded_pixels() -> None:
    """1x5120 is 5120 pixels but 64x5120 = 327680 of work."""
    assert load_image(_png(1, 5120), max_pixels=327_680).height == 5120
    with pytest.raises(ImageTooLargeError, match="64x5120 = 327680 once padded"):
        load_image(_png(1, 5120), max_pixels=327_679)


def test_decode_refuses_a_padded_size_over_the_limit(stages: dict[str, int]) -> None:
    data = encode_report(Image.fromarray(synthetic_rgb(40, 40)), quality=2).data
    assert decoding.decode_image(data, max_pixels=64 * 64).rgb.shape == (40, 40, 3)
    stages["resolve_model"] = 0
    with pytest.raises(BitstreamTooLargeError, match="64x64 = 4096 once padded"):
        decoding.decode_image(data, max_pixels=64 * 64 - 1)
    assert stages["resolve_model"] == 0  # the refused decode never got to the model


def test_api_upload_check_refuses_a_thin_strip_with_image_too_large() -> None:
    """The API's upload check (encode jobs, domain samples) uses the codec's rule: 422 problem."""
    from service.api.uploads import validate_image
    from service.core.errors import ProblemError

    with pytest.raises(ProblemError) as info:
        validate_image(_png(1, 1_000_000), max_pixels=50_000_000)
    assert info.value.status == 422 and info.value.kind == "image-too-large"


def test_cli_bit_exact_and_pixel_limit(tmp_path: Path) -> None:
    from tests.test_cli import udic

    data = encode_report(Image.fromarray(synthetic_rgb(40, 40)), quality=2).data
    (tmp_path / "a.udic").write_bytes(data)
    done = udic("decode", tmp_path / "a.udic", "-o", tmp_path / "a.png", "--bit-exact")
    assert done.returncode == 0
    with Image.open(tmp_path / "a.png") as im:
        assert np.array_equal(np.asarray(im), decoding.decode_image(data, bit_exact=True).rgb)
    refused = udic("decode", tmp_path / "a.udic", "-o", tmp_path / "b.png", "--max-pixels", "2000")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "once padded" in refused.stderr
