"""Decoding a ``.udic`` bitstream in stages, the cheapest checks first.

A bitstream is untrusted input whose header claims the work it needs: a real 1.8 KB file whose
size field was rewritten to 8192x6100 (CRC recomputed) used to cost 60 s of CPU and ~10 GB before
its symbol hash was found wrong, after the synthesis. Now the stages are, in order:

1. **Container** (``codec.bitstream``): magic, version, CRC, lengths.
2. **Pixel limit**: the padded area the header claims against ``max_pixels`` (the encoder's rule,
   :func:`codec.imageio.check_pixel_limit`), before the model is even looked up.
3. **Model** named by the file, checked against its weights hash.
4. **z floor** (:func:`min_z_bytes`): every z symbol costs at least the information content of
   the most likely value of its channel's (fixed) probability table, so a real file of the claimed
   size has a z section at least that long. A too-short z section means the size was changed, and
   is refused with no entropy decoding at all. It needs no new field: old files are covered, and
   there is nothing an attacker can strip. (A y floor would be useless: the narrowest Gaussian
   table allows 7e-5 bit per symbol.)
5. **Entropy decoding** under canonical compute (z, hyper-synthesis, y), y in bounded chunks
   (:func:`decode_indexed`; for the gained model in channel groups, :mod:`codec.entropy_chunks`)
   so that no Python list of every symbol, and no full-size temporary, is ever built.
6. **Symbol hash** (``Field.SYMBOLS_HASH``), checked *before* the synthesis: a file that passes the
   floor but does not decode to what was encoded costs entropy decoding only.
7. **Synthesis**: the only full-resolution stage. It does not decide any CDF index, so it runs with
   the caller's torch threads (all cores by default) or on CUDA when present. Its pixels depend on
   the thread count: measured on kodim23 at q3, 1 vs 2 threads, 11 pixels differ by 1 (float
   difference 6e-7). ``bit_exact=True`` runs it on the canonical single thread instead, giving the
   same pixels on every machine; the encoder verifies its files that way.
   Files coded in tiles (``Field.TILING``, :mod:`codec.tiling`) synthesise tile by tile, each
   tile on one canonical thread and several tiles at once: bit-exact *and* on every core, in
   memory set by the tile size. Single-tile files above the tiling threshold take the same tiled
   path unless ``bit_exact`` (then their pixels may differ from the canonical whole synthesis by
   one level at a few positions, as between thread counts).

What this does not bound: a file that is consistent at its claimed size (or that carries no symbol
hash) costs a real decode of that size, because it *is* one (a flat 50 Mpixel image codes to about
40 KB). The pixel limit and the API's decode lanes bound that.
"""

from __future__ import annotations

import copy
import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from compressai.ans import RansDecoder
from PIL import Image
from torch import Tensor, nn

from codec.adaptation.decoding import adapter_maps, run_folded
from codec.adaptation.qstep import QSteps, with_steps
from codec.bitstream import BitstreamError, BitstreamTooLargeError, Container, Field, Section
from codec.determinism import CANONICAL_DEVICE, best_device, canonical_compute
from codec.entropy_chunks import decompress_grouped
from codec.imageio import DEFAULT_MAX_PIXELS, PAD_MULTIPLE, CodecImage, check_pixel_limit, padded_size
from codec.models.gained import GainedMeanScaleHyperprior
from codec.models.wacnn import WACNN
from codec.tiling import TileLayout, current_policy, release_heap, synthesis_tiled
from codec.zoo.base import BaseModel
from codec.zoo.context_models import is_context_model, serial_decompress, synthesis_view
from codec.zoo.decompress import is_plain_hyperprior, padded_strings
from codec.zoo.errors import UnknownModelError
from codec.zoo.hashing import SymbolsHasher, symbols_hash
from codec.zoo.registry import Registry, default_registry

MAX_CODED_SIDE = 1 << 16
#: y symbols decoded per call of the rANS decoder: bounds the Python lists to ~8 MB each
DECODE_CHUNK = 1 << 20
#: rANS (64-bit state, 16-bit probabilities) may code a symbol in up to 2^-15 relative state
#: precision less than its information content: 4.4e-5 bit; the floor allows 1e-4 per symbol
_RANS_SLACK_BITS = 1e-4
_RANS_STATE_BYTES = 16


def to_uint8(x: Tensor) -> np.ndarray:
    """(1, 3, H, W) float -> (H, W, 3) uint8, rounding half away from zero after clamping."""
    return x.clamp(0, 1).mul(255.0).round().to(torch.uint8)[0].permute(1, 2, 0).contiguous().numpy()


def _alpha_from_payload(payload: bytes, width: int, height: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(payload)) as im:
            if im.format != "PNG" or im.mode != "L" or im.size != (width, height):
                raise BitstreamError("bitstream is corrupt (alpha section does not match the image)")
            return np.asarray(im, dtype=np.uint8).copy()
    except (OSError, SyntaxError, zlib.error) as exc:
        raise BitstreamError(f"bitstream is corrupt (alpha section: {exc})") from None


def parse_level(container: Container) -> tuple[float, int | None]:
    """(level, zoo quality or None) from the LEVEL field: 4 bytes float level, 1 byte quality."""
    raw = container.require(Field.LEVEL)
    if len(raw) == 4:
        level = struct.unpack("<f", raw)[0]
        if not np.isfinite(level):
            raise BitstreamError("bitstream is corrupt (rate level is not a number)")
        return level, None
    if len(raw) == 1:
        return float(raw[0] - 1), raw[0]
    raise BitstreamError("bitstream is corrupt (bad LEVEL field)")


def read_header(data: bytes) -> dict[str, object]:
    """Header fields of a bitstream, parsed and checked, without decoding any pixel."""
    c = Container.from_bytes(data)
    w, h = c.image_size()
    level, zoo_q = parse_level(c)
    QSteps.from_container(c)  # a corrupt quantisation step is refused with the header (the API's 422)
    return {
        "format_version": c.version,
        "model": c.get_str(Field.MODEL_ID),
        "model_hash": c.require(Field.MODEL_HASH).hex(),
        "width": w,
        "height": h,
        "quality": (zoo_q if zoo_q is not None else round(level + 1.0, 4)),
        "grayscale": c.fields.get(Field.COLOR, b"\x00") == b"\x01",
        "alpha": Section.ALPHA in c.sections,
        "domain": c.get_str(Field.DOMAIN_ID) if Field.DOMAIN_ID in c.fields else None,
        "bytes": len(data),
        "bpp": len(data) * 8.0 / (w * h),
        "sections": {
            Section(t).name if t in Section._value2member_map_ else f"0x{t:02x}": len(v) for t, v in c.sections.items()
        },
    }


def resolve_model(c: Container, registry: Registry) -> tuple[BaseModel, float]:
    """The base model a container names, checked against its weights hash."""
    name = c.get_str(Field.MODEL_ID)
    level, zoo_q = parse_level(c)
    try:
        # a file made with a retired default gets its kept version; other weights are refused
        name, base = registry.for_bitstream(name, c.require(Field.MODEL_HASH), zoo_q)
    except UnknownModelError:
        raise UnknownModelError(f"bitstream needs model {name!r}, which this decoder does not have") from None
    lo, hi = base.quality_range
    if not (lo - 1 <= level <= hi - 1):
        raise BitstreamError("bitstream is corrupt (rate level out of range)")
    if Field.DOMAIN_ID in c.fields:
        domain_hash = c.require(Field.DOMAIN_HASH)
        base = registry.domain_model(name, c.get_str(Field.DOMAIN_ID), domain_hash, with_encoder=False)
    return base, level


def check_claimed_size(w: int, h: int, max_pixels: int) -> tuple[int, int]:
    """The latent (z) shape for a claimed image size, refusing what exceeds the pixel limit."""
    if w > MAX_CODED_SIDE or h > MAX_CODED_SIDE:
        raise BitstreamError(f"bitstream is corrupt (implausible image size {w}x{h})")
    check_pixel_limit(w, h, max_pixels, error=BitstreamTooLargeError)
    wp, hp = padded_size(w, h)
    return hp // PAD_MULTIPLE, wp // PAD_MULTIPLE


def min_z_bytes(net: nn.Module, shape: tuple[int, int]) -> int:
    """A lower bound on the z section of any real file with this z shape (0 if the model has no
    factorised z prior). Each z symbol is coded with its channel's fixed table, so it costs at
    least ``-log2(max pmf)`` bits; rANS loses at most 4.4e-5 bit per symbol to state precision
    (allowed as 1e-4) and the 8-byte state flush is allowed twice over. Measured on the embedded
    model: 25.3 bits per z position; flat 512x512 images code z in 272-380 bytes against a floor
    of 202, so the bound is tight and never refuses a real file."""
    eb: Any = getattr(net, "entropy_bottleneck", None)
    cdf = getattr(eb, "_quantized_cdf", None)
    if cdf is None or cdf.numel() == 0:
        return 0
    lengths = eb._cdf_length.reshape(-1, 1).long()
    steps = (cdf[:, 1:] - cdf[:, :-1]).double()
    valid = torch.arange(steps.shape[1]).reshape(1, -1) < lengths - 1
    best = torch.where(valid, steps, torch.zeros_like(steps)).amax(dim=1).clamp(min=1.0)
    per_channel = (-torch.log2(best / 65536.0) - _RANS_SLACK_BITS).clamp(min=0.0)
    bits = float(per_channel.sum()) * shape[0] * shape[1]
    return max(0, int(bits / 8.0) - _RANS_STATE_BYTES)


def check_z_floor(net: nn.Module, c: Container, shape: tuple[int, int]) -> None:
    """Refuse a z section shorter than any real file of the claimed size has (see :func:`min_z_bytes`)."""
    need = min_z_bytes(net, shape)
    have = len(c.section(Section.Z))
    if have < need:
        raise BitstreamError(
            f"bitstream is corrupt (its z section has {have} bytes; any image padded to "
            f"{shape[1] * PAD_MULTIPLE}x{shape[0] * PAD_MULTIPLE} needs at least {need}: the image size was altered)"
        )


def decode_indexed(model: Any, string: bytes, indexes: Tensor, chunk: int = DECODE_CHUNK) -> Tensor:
    """int32 symbols of one rANS string for the given CDF indexes, ``chunk`` symbols per call.

    The same symbols as CompressAI's ``EntropyModel.decompress`` (one continuous rANS stream), but
    that one converts every index and every symbol to a Python list at once (~16 bytes a symbol
    each way): at 50 Mpixel that is 19 M symbols and ~600 MB of lists."""
    cdf = model._quantized_cdf.tolist()
    lengths = model._cdf_length.reshape(-1).int().tolist()
    offsets = model._offset.reshape(-1).int().tolist()
    flat = indexes.reshape(-1).int()
    out = torch.empty(flat.numel(), dtype=torch.int32)
    decoder = RansDecoder()
    decoder.set_stream(string)
    for start in range(0, flat.numel(), chunk):
        part = flat[start : start + chunk]
        out[start : start + part.numel()] = torch.tensor(
            decoder.decode_stream(part.tolist(), cdf, lengths, offsets), dtype=torch.int32
        )
    return out.reshape(indexes.shape)


@dataclass
class Latents:
    """What entropy decoding gives: the synthesis input and the symbols the hash covers.

    ``x_hat`` is set instead for models decoded whole (CompressAI models other than the plain
    hyperpriors: their decode does not expose the latents or the symbols)."""

    y: Tensor | None
    g_s: nn.Sequential | None
    symbols: list[Tensor] | None
    hashed: SymbolsHasher | None = None  # the symbols hashed while decoding (they come before ``symbols``)
    maps: dict[int, Tensor] = field(default_factory=dict)
    x_hat: Tensor | None = None
    tileable: bool = True  # whether the tiles' halo covers the synthesis's reach (not cheng2020's)


def _gained_latents(base: BaseModel, strings: list[list[bytes]], shape: tuple[int, int], level: float) -> Latents:
    """``GainedMeanScaleHyperprior.decompress_latents`` in channel groups (``codec.entropy_chunks``):
    the same arithmetic and symbols, in bounded memory."""
    net = base.net
    assert isinstance(net, GainedMeanScaleHyperprior)
    hasher = SymbolsHasher()
    y = decompress_grouped(net, strings, shape, base.level_tensor(level), hasher)
    return Latents(y=y, g_s=net.g_s, symbols=[], hashed=hasher)


def _hyperprior_latents(net: Any, strings: list[list[bytes]], shape: tuple[int, int]) -> Latents:
    """``codec.zoo.decompress.hyperprior_decompress`` up to the synthesis; same arithmetic."""
    eb, gc = net.entropy_bottleneck, net.gaussian_conditional
    z_hat = eb.decompress(strings[1], shape)
    params, means = net.h_s(z_hat), None
    if type(net).__name__ == "MeanScaleHyperprior":
        params, means = params.chunk(2, 1)
    y_sym = decode_indexed(gc, strings[0][0], gc.build_indexes(params))
    y_hat = y_sym.to(z_hat.dtype)
    if means is not None:
        y_hat = y_hat + means
    z_sym = torch.round(z_hat - eb._get_medians().reshape(1, -1, 1, 1)).to(torch.int32)
    return Latents(y=y_hat, g_s=net.g_s, symbols=[y_sym, z_sym])


def _context_latents(net: nn.Module, strings: list[list[bytes]], shape: tuple[int, int]) -> Latents:
    """A context model's serial decode (:mod:`codec.zoo.context_models`: CompressAI's own loop)
    up to the synthesis, which runs through its synthesis view (adapters fold in as elsewhere)."""
    y_hat, symbols = serial_decompress(net, strings, shape)
    cheng = type(net).__name__.startswith("Cheng2020")  # residual and attention blocks reach past the halo
    return Latents(y=y_hat, g_s=synthesis_view(net), symbols=symbols, tileable=not cheng)


def entropy_decode(base: BaseModel, c: Container, shape: tuple[int, int], level: float) -> Latents:
    """Everything before the synthesis; call under :func:`canonical_compute` (it decides the CDF
    indexes). Strings are zero-padded (``padded_strings``) so no input makes rANS read past them."""
    adapted = Section.ADAPTERS in c.sections or Section.OMP in c.sections
    maps, extra = adapter_maps(base, c) if adapted else ({}, [])  # layout checked before decoding
    strings = padded_strings(base.net, [[c.section(Section.Y)], [c.section(Section.Z)]], shape)
    try:
        if isinstance(base.net, GainedMeanScaleHyperprior):
            lat = _gained_latents(base, strings, shape, level)
        elif not base.variable_rate and is_plain_hyperprior(base.net):
            lat = _hyperprior_latents(base.net, strings, shape)
        elif not base.variable_rate and is_context_model(base.net):
            lat = _context_latents(base.net, strings, shape)
        elif not base.variable_rate and isinstance(base.net, WACNN):
            y, sym = base.net.decompress_latents(strings, shape)  # slice by slice (codec.models.wacnn)
            lat = Latents(y=y, g_s=base.net.g_s, symbols=sym, tileable=False)  # windows need the whole map
        else:
            x_hat, symbols = base.decompress(strings, shape, level)
            return Latents(y=None, g_s=None, symbols=symbols, x_hat=x_hat)
    except (RuntimeError, ValueError, IndexError) as exc:
        if isinstance(exc, BitstreamError):
            raise
        raise BitstreamError(f"bitstream is corrupt (entropy decoding failed: {exc})") from None
    lat.maps = maps
    if lat.symbols is not None:
        lat.symbols = lat.symbols + extra
    return lat


def check_symbols(c: Container, lat: Latents) -> None:
    """The symbol hash, when the file has one and the model exposes its symbols."""
    expected = c.fields.get(Field.SYMBOLS_HASH)
    if expected is not None and lat.symbols is not None and symbols_hash(lat.symbols, lat.hashed) != expected:
        raise BitstreamError(
            "bitstream does not decode to what was encoded "
            "(payload altered, or the entropy model differs on this platform)"
        )


def synthesize(lat: Latents, bit_exact: bool) -> Tensor:
    """The synthesis transform (adapters folded in): canonical when ``bit_exact``, else with the
    caller's torch threads and the last layer as a sub-pixel convolution (``codec.subpixel``), or
    on CUDA when present (a copy of the synthesis moves there)."""
    if lat.x_hat is not None:
        return lat.x_hat
    assert lat.y is not None and lat.g_s is not None
    if bit_exact:
        with canonical_compute():
            return run_folded(lat.g_s, lat.y, lat.maps).clamp_(0, 1)
    g_s, maps, device = _synthesis_on(lat, best_device())
    with torch.inference_mode():
        return run_folded(g_s, lat.y.to(device), maps, subpixel_last=device.type == "cpu").clamp_(0, 1).cpu()


def _synthesis_on(lat: Latents, device: torch.device) -> tuple[nn.Sequential, dict[int, Tensor], torch.device]:
    """The synthesis and its adapter maps on ``device`` (a copy when that is not the CPU)."""
    assert lat.g_s is not None
    if device.type == "cpu":
        return lat.g_s, lat.maps, device
    g_s = copy.deepcopy(lat.g_s).to(device)
    assert isinstance(g_s, nn.Sequential)
    return g_s, {i: m.to(device) for i, m in lat.maps.items()}, device


def choose_layout(lat: Latents, c: Container, bit_exact: bool, size: tuple[int, int]) -> TileLayout | None:
    """How to run the synthesis: the file's own layout when it has one (that is its canonical
    reconstruction); for a single-tile file the whole image when ``bit_exact`` (the canonical
    pixels of old files), else tiles above the policy's threshold (memory bounded; pixels then
    differ from the canonical ones by float rounding, as between thread counts)."""
    layout = TileLayout.from_container(c)
    if layout is not None or bit_exact or lat.x_hat is not None or not lat.tileable:
        return layout
    return current_policy().layout_for(*size)


def synthesize_pixels(lat: Latents, bit_exact: bool, layout: TileLayout | None, size: tuple[int, int]) -> np.ndarray:
    """The decoded (H, W, 3) uint8 image, whole or in tiles (``codec.tiling``).

    Tiles on the CPU always run on one thread each (several tiles at once: the caller's torch
    thread count), so their pixels do not depend on the thread count. With ``bit_exact`` they are
    the canonical ones; without, the last layer runs as a sub-pixel convolution (``codec.subpixel``,
    a quarter less time per tile), which can move a few 8-bit values by one level. On CUDA, unless
    ``bit_exact``, the tiles run there one after the other."""
    w, h = size
    if layout is None or lat.y is None or lat.g_s is None:
        x_hat = synthesize(lat, bit_exact)
        del lat
        return to_uint8(x_hat[..., :h, :w])
    y, maps = lat.y, lat.maps
    device = CANONICAL_DEVICE if bit_exact else best_device()
    if device.type == "cpu":
        workers = torch.get_num_threads()  # the caller's, read before canonical mode sets one
        g_s = copy.deepcopy(lat.g_s).to(memory_format=torch.channels_last)  # same floats, faster
        with canonical_compute():
            return synthesis_tiled(
                lambda t: run_folded(g_s, t.contiguous(memory_format=torch.channels_last), maps, not bit_exact),
                y,
                layout,
                size,
                CANONICAL_DEVICE,
                workers,
            )
    dev_g_s, dev_maps, _ = _synthesis_on(lat, device)
    return synthesis_tiled(lambda t: run_folded(dev_g_s, t, dev_maps), y, layout, size, device)


def decode_image(
    data: bytes,
    registry: Registry | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    bit_exact: bool = False,
) -> CodecImage:
    """Decode a bitstream into a :class:`CodecImage` (RGB + optional alpha, gray flag).

    ``max_pixels`` bounds the padded area the header may claim (:class:`BitstreamTooLargeError`,
    which is also an image-too-large error). ``bit_exact`` runs the synthesis on the canonical
    single thread: the same pixels on every machine, slower; otherwise pixels may differ by one
    level at a few positions between thread counts (see the module notes)."""
    reg = registry or default_registry()
    c = Container.from_bytes(data)
    w, h = c.image_size()
    shape = check_claimed_size(w, h, max_pixels)
    base, level = resolve_model(c, reg)
    base = with_steps(base, c)  # a file coded with a quantisation step (none: base itself)
    check_z_floor(base.net, c, shape)
    TileLayout.from_container(c)  # a corrupt layout is refused before any entropy decoding
    alpha = _alpha_from_payload(c.sections[Section.ALPHA], w, h) if Section.ALPHA in c.sections else None
    with canonical_compute():
        lat = entropy_decode(base, c, shape, level)
    check_symbols(c, lat)
    lat.symbols, lat.hashed = None, None  # checked: free them before the synthesis
    layout = choose_layout(lat, c, bit_exact, (w, h))
    if layout is not None:
        release_heap()  # the entropy stage's temporaries, before the synthesis builds its own peak
    rgb = synthesize_pixels(lat, bit_exact, layout, (w, h))
    del lat
    gray = c.fields.get(Field.COLOR, b"\x00") == b"\x01"
    return CodecImage(rgb=rgb, alpha=alpha, grayscale=gray)


def decode(
    data: bytes, registry: Registry | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS, bit_exact: bool = False
) -> Image.Image:
    """Decode a bitstream into a PIL image (L, LA, RGB or RGBA as the source was)."""
    return decode_image(data, registry, max_pixels=max_pixels, bit_exact=bit_exact).to_pil()
