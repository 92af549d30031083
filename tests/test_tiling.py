"""Tiled coding (issue 12): tiled against whole-image coding, old files, adapters, the header field,
and the settings that choose it.

Small images with small tiles (64 pixels, halo 32) so that many tile borders are crossed quickly;
the policy's threshold is set to 0 to tile them. The stated bound (docs/guide/tiling.md): the
latents, so the Y and Z sections, are identical; the pixels of a tiled decode differ from the
whole-image decode by at most one level, at no more than 0.1 % of the pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.adaptation.adapters import pack_omp
from codec.adaptation.decoding import run_folded
from codec.bitstream import BitstreamError, Container, Field, Section
from codec.coder import EncodeResult, encode_report, to_tensor
from codec.decoding import decode_image, to_uint8
from codec.determinism import canonical_compute
from codec.models.gained import GainedMeanScaleHyperprior
from codec.tiling import TileLayout, TilingPolicy, analysis_tiled, synthesis_tiled, tiling_policy
from codec.zoo import Registry, default_registry
from codec.zoo.hashing import SymbolsHasher, symbols_hash
from tests.conftest import synthetic_rgb

SMALL_TILES = TilingPolicy(threshold_pixels=0, layout=TileLayout(tile=4, halo=2))
MAX_DIFFERING = 1e-3  # fraction of pixel samples allowed to differ (by one level) from the whole decode


def _picture(kodak: Path | None = None) -> Image.Image:
    if kodak is not None and kodak.is_file():
        with Image.open(kodak) as im:
            return im.convert("RGB").crop((150, 100, 453, 297))  # 303x197: odd, padded on both sides
    return Image.fromarray(synthetic_rgb(197, 303, seed=11))


def _pair(img: Image.Image, registry: Registry | None = None, **kw: object) -> tuple[EncodeResult, EncodeResult]:
    whole = encode_report(img, registry=registry, **kw)  # type: ignore[arg-type]
    with tiling_policy(SMALL_TILES):
        tiled = encode_report(img, registry=registry, **kw)  # type: ignore[arg-type]
    return whole, tiled


def _within_bound(a: np.ndarray, b: np.ndarray) -> None:
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1
    assert (diff > 0).mean() <= MAX_DIFFERING


@pytest.fixture(scope="module")
def pair(kodak_path: Path) -> tuple[EncodeResult, EncodeResult]:
    return _pair(_picture(kodak_path), quality=3)


def test_tiled_encode_codes_the_same_latents(pair: tuple[EncodeResult, EncodeResult]) -> None:
    whole, tiled = pair
    cw, ct = Container.from_bytes(whole.data), Container.from_bytes(tiled.data)
    assert Field.TILING not in cw.fields
    assert TileLayout.from_container(ct) == SMALL_TILES.layout
    for tag in (Section.Y, Section.Z):
        assert cw.sections[tag] == ct.sections[tag]
    assert cw.fields[Field.SYMBOLS_HASH] == ct.fields[Field.SYMBOLS_HASH]
    assert len(tiled.data) == len(whole.data) + 5  # the field: tag, length, 3 bytes


def test_tiled_decode_is_within_the_stated_bound_of_the_whole_decode(pair: tuple[EncodeResult, EncodeResult]) -> None:
    whole, tiled = pair
    _within_bound(whole.decoded.rgb, tiled.decoded.rgb)
    assert abs(whole.psnr - tiled.psnr) < 0.01


def test_a_tiled_file_decodes_to_the_same_pixels_at_any_thread_count(
    pair: tuple[EncodeResult, EncodeResult],
) -> None:
    """Tiles run one thread each (several at once), so a decode does not depend on the thread
    count; the default decode runs the last layer as a sub-pixel convolution (codec.subpixel), so
    it is within the bound of the verified pixels, and ``bit_exact`` gives them exactly."""
    _, tiled = pair
    threads = torch.get_num_threads()
    try:
        decoded = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            decoded.append(decode_image(tiled.data).rgb)
            assert np.array_equal(decode_image(tiled.data, bit_exact=True).rgb, tiled.decoded.rgb)
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(d, decoded[0]) for d in decoded)
    _within_bound(decoded[0], tiled.decoded.rgb)


def test_parallel_channels_last_tiles_equal_one_contiguous_thread(kodak_path: Path) -> None:
    """What the speed-ups must not change: the pool of tiles gives the floats of a plain one-thread
    run, for the analysis (bit-identical latents), and so does the channels-last layout for the
    synthesis (bit-identical pixels). (Channels-last changes the analysis's floats: 3 input
    channels take another kernel; so the analysis stays contiguous.)"""
    net = default_registry().get("default").net
    assert isinstance(net, GainedMeanScaleHyperprior)
    rgb = np.asarray(_picture(kodak_path))
    layout = SMALL_TILES.layout
    from codec.tiling import channels_last

    with canonical_compute():
        y1 = analysis_tiled(net.g_a, rgb, layout, net.M, workers=1)
        y2 = analysis_tiled(net.g_a, rgb, layout, net.M, workers=3)
        assert torch.equal(y1, y2)
        y = torch.round(y1)
        size = (rgb.shape[1], rgb.shape[0])
        p1 = synthesis_tiled(net.g_s, y, layout, size, torch.device("cpu"), workers=1)
        p2 = synthesis_tiled(channels_last(net.g_s), y, layout, size, torch.device("cpu"), workers=3)
    assert np.array_equal(p1, p2)


def test_old_single_tile_files_keep_their_pixels(pair: tuple[EncodeResult, EncodeResult]) -> None:
    """A file without the field decodes bit-exact as before (the whole synthesis), even when the
    policy would tile its size; its ordinary decode may tile, within the bound."""
    whole, _ = pair
    with tiling_policy(SMALL_TILES):
        assert np.array_equal(decode_image(whole.data, bit_exact=True).rgb, whole.decoded.rgb)
        _within_bound(decode_image(whole.data).rgb, whole.decoded.rgb)


def test_small_images_keep_the_single_tile_format() -> None:
    img = Image.fromarray(synthetic_rgb(64, 80, seed=2))
    assert Field.TILING not in Container.from_bytes(encode_report(img, quality=2).data).fields
    with tiling_policy(TilingPolicy(threshold_pixels=64 * 128)):
        assert Field.TILING not in Container.from_bytes(encode_report(img, quality=2).data).fields
    with tiling_policy(TilingPolicy(threshold_pixels=64 * 128 - 1)):
        assert Field.TILING in Container.from_bytes(encode_report(img, quality=2).data).fields


def test_per_image_adapters_apply_in_a_tiled_decode(pair: tuple[EncodeResult, EncodeResult]) -> None:
    """An OMP section (a per-image channel map in the synthesis, like the adapters) added to a tiled
    file: the tiled decode applies it, within the bound of the whole synthesis with the same map."""
    _, tiled = pair
    net = default_registry().get("default").net
    assert isinstance(net, GainedMeanScaleHyperprior)
    values = torch.linspace(0.6, 1.4, net.N)
    c = Container.from_bytes(tiled.data)
    c.sections[Section.OMP] = pack_omp(1, values)
    adapted = decode_image(c.to_bytes()).rgb
    from codec.adaptation.decoding import adapter_maps
    from codec.decoding import Latents, entropy_decode, resolve_model

    base, level = resolve_model(c, default_registry())
    h, w = adapted.shape[:2]
    with canonical_compute():
        lat: Latents = entropy_decode(base, c, (-(-h // 64), -(-w // 64)), level)
        maps, _ = adapter_maps(base, c)
        assert lat.y is not None
        expected = to_uint8(run_folded(net.g_s, lat.y, maps).clamp(0, 1)[..., :h, :w])
    _within_bound(adapted, expected)
    assert np.abs(adapted.astype(int) - tiled.decoded.rgb).mean() > 1.0  # the map did change the picture


def test_domain_adapters_apply_in_tiled_coding(kodak_path: Path) -> None:
    from tests.test_bitstream_pins import formula_domain

    reg = Registry()
    domain = formula_domain(reg)
    whole, tiled = _pair(_picture(kodak_path), registry=reg, quality=3, domain=domain)
    plain = encode_report(_picture(kodak_path), registry=reg, quality=3)
    ct = Container.from_bytes(tiled.data)
    assert ct.get_str(Field.DOMAIN_ID) == domain and Field.TILING in ct.fields
    assert Container.from_bytes(whole.data).sections[Section.Y] == ct.sections[Section.Y]
    _within_bound(whole.decoded.rgb, tiled.decoded.rgb)
    assert np.array_equal(decode_image(tiled.data, registry=reg, bit_exact=True).rgb, tiled.decoded.rgb)
    _within_bound(decode_image(tiled.data, registry=reg).rgb, tiled.decoded.rgb)
    assert not np.array_equal(plain.decoded.rgb, tiled.decoded.rgb)


@pytest.mark.parametrize("value", [b"\x04\x00", b"\x00\x00\x02", b"\x04\x00\xff"])
def test_a_corrupt_tiling_field_is_refused_before_entropy_decoding(
    pair: tuple[EncodeResult, EncodeResult], value: bytes
) -> None:
    c = Container.from_bytes(pair[1].data)
    c.fields[Field.TILING] = value
    with pytest.raises(BitstreamError, match="TILING"):
        decode_image(c.to_bytes())


def test_the_api_answers_a_corrupt_tiling_field_with_a_422_problem(pair: tuple[EncodeResult, EncodeResult]) -> None:
    from service.core.errors import ProblemError
    from service.decoding import decode_to_png

    c = Container.from_bytes(pair[1].data)
    c.fields[Field.TILING] = b"\x00\x00\x02"
    with pytest.raises(ProblemError) as info:
        decode_to_png(c.to_bytes())
    assert info.value.status == 422 and info.value.kind == "invalid-bitstream"


def test_the_tiled_analysis_reads_the_padded_image_exactly() -> None:
    """``pixel_window`` gives what ``pad_image`` does, so the tiles see the whole image's pixels."""
    from codec.coder import pad_image
    from codec.tiling import pixel_window

    rgb = synthetic_rgb(37, 70, seed=4)
    whole = pad_image(to_tensor(rgb))
    assert torch.equal(pixel_window(rgb, 0, 4, 0, 5), whole[..., :64, :80])
    assert torch.equal(pixel_window(rgb, 1, 4, 2, 5), whole[..., 16:64, 32:80])


def test_the_tiling_settings_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.core.config import Settings

    monkeypatch.setenv("UDIC_TILE_THRESHOLD_PIXELS", "1000")
    monkeypatch.setenv("UDIC_TILE_PX", "512")
    s = Settings()
    policy = TilingPolicy.from_pixels(s.tile_threshold_pixels, s.tile_px)
    assert policy.threshold_pixels == 1000 and policy.layout == TileLayout(tile=32)
    with pytest.raises(ValueError, match="multiple of 64"):
        TilingPolicy.from_pixels(1000, 500)


def test_cli_tile_threshold(tmp_path: Path) -> None:
    from tests.test_cli import udic

    src = tmp_path / "a.png"
    Image.fromarray(synthetic_rgb(100, 150, seed=3)).save(src)
    assert udic("encode", src, "-o", tmp_path / "a.udic", "-q", "2", "--tile-threshold", "0").returncode == 0
    c = Container.from_bytes((tmp_path / "a.udic").read_bytes())
    assert TileLayout.from_container(c) == TileLayout()
    done = udic("decode", tmp_path / "a.udic", "-o", tmp_path / "a.png", "--tile-size", "100")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "multiple of 64" in done.stderr


def test_grouped_entropy_coding_is_the_whole_tensor_coding(kodak_path: Path) -> None:
    """Channel groups (tiny ones here, and a coder chunk boundary inside a group) give the bytes and
    the symbols of ``compress_gained`` and the latents of ``decompress_latents``."""
    import codec.entropy_chunks as chunks

    net = default_registry().get("default").net
    assert isinstance(net, GainedMeanScaleHyperprior)
    q = torch.tensor([2.3])
    with canonical_compute():
        y, z = net.analysis(to_tensor(np.asarray(_picture(kodak_path).crop((0, 0, 256, 192)))))
        y_g = y * net.gains(q)[0]
        whole = net.compress_gained(y_g, z, q)
        old_chunk = chunks.CODER_CHUNK
        try:
            chunks.CODER_CHUNK = 1000
            grouped = chunks.compress_gained_grouped(net, y_g, z, q, elements=7 * 12 * 16)
        finally:
            chunks.CODER_CHUNK = old_chunk
        assert grouped["strings"] == whole["strings"]
        for a, b in zip(grouped["symbols"], whole["symbols"], strict=True):  # type: ignore[call-overload]
            assert torch.equal(a, b)
        strings = whole["strings"]
        y_hat, p, symbols = net.decompress_latents(strings, (3, 4), q)  # type: ignore[arg-type]
        hasher = SymbolsHasher()
        y2 = chunks.decompress_grouped(net, strings, (3, 4), q, hasher, elements=7 * 12)  # type: ignore[arg-type]
    assert torch.equal(y2, y_hat * p.inv_gain)
    # the symbols hashed group by group as decoded: the hash of the whole tensors the encoder hashes
    assert hasher.digest() == symbols_hash(list(symbols))


def test_a_halo_of_two_latents_covers_the_synthesis_reach(kodak_path: Path) -> None:
    """The default halo against a much wider one: float rounding apart, the same output (a halo
    short of the reach would differ by whole levels near every tile border)."""
    from codec.tiling import run_tiled

    net = default_registry().get("default").net
    assert isinstance(net, GainedMeanScaleHyperprior)
    with canonical_compute():
        y = torch.round(net.g_a(to_tensor(np.asarray(_picture(kodak_path).crop((0, 0, 256, 192))))))
        outs = []
        for halo in (2, 8):
            out = torch.empty(1, 3, 192, 256)

            def write(r0: int, r1: int, c0: int, c1: int, t: torch.Tensor, out: torch.Tensor = out) -> None:
                out[..., r0 * 16 : r1 * 16, c0 * 16 : c1 * 16] = t

            run_tiled(net.g_s, (12, 16), TileLayout(4, halo), lambda a0, a1, b0, b1: y[..., a0:a1, b0:b1], write)
            outs.append(out)
    assert (outs[0] - outs[1]).abs().max() < 1e-4
