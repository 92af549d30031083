"""Entropy coding of the gained latent y in groups of channels: the same bytes and symbols as
``GainedMeanScaleHyperprior.compress_gained`` / ``decompress_latents``, in bounded memory.

The whole-tensor path keeps several full-size copies of y alive at once: the hyper-synthesis
output split into means and scales, both multiplied by the gains, CompressAI's CDF indexes and
its temporaries, and Python lists of every symbol and index (~16 bytes a symbol each way). At
48 Mpixel (24 M symbols) that was ~1 GB over the process's baseline, more than the tiled
synthesis needs. Everything between the hyper-synthesis and the coder is element-wise (a gain
product, a lower bound, comparisons with the scale table, a rounding), so it can run on a few
channels at a time with the same floats. The rANS stream is in flattened (C, H, W) order, so a
group of channels is a contiguous run of it: one ``BufferedRansEncoder`` fed group after group
and flushed once writes the bytes ``RansEncoder.encode_with_indexes`` writes for the whole
tensor (it is that encoder plus a flush), and one ``RansDecoder`` reads them back in groups.

Used for tiled coding (``codec.tiling``); tests/test_tiling.py checks the bytes against the
whole-tensor path.

What stays whole: the hyper-synthesis h_s, because it decides the CDF indexes and its tiles do
*not* give the whole run's floats (measured: equal at some z sizes, 2e-5 apart at others, e.g.
33x37). Its second transposed convolution builds a column buffer of (48 x 25) x the y positions
(~900 MB at 48 Mpixel); that is the peak of a 48 Mpixel decode and of the encoder's verification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from torch import Tensor

from codec.models.gained import GainedMeanScaleHyperprior
from codec.zoo.hashing import SymbolsHasher

#: symbols per call into the rANS coder (bounds the Python lists to ~8 MB each)
CODER_CHUNK = 1 << 20
#: latent elements per channel group (bounds the float temporaries to ~8 MB each)
GROUP_ELEMENTS = 1 << 21


@dataclass
class _Tables:
    """A Gaussian conditional's CDF tables as the rANS coder takes them (lists, converted once)."""

    cdf: list[list[int]]
    lengths: list[int]
    offsets: list[int]

    @classmethod
    def of(cls, model: Any) -> _Tables:
        return cls(
            model._quantized_cdf.tolist(),
            model._cdf_length.reshape(-1).int().tolist(),
            model._offset.reshape(-1).int().tolist(),
        )


def channel_groups(channels: int, plane: int, elements: int = GROUP_ELEMENTS) -> list[tuple[int, int]]:
    """``[c0, c1)`` channel ranges of about ``elements`` latent values each (one channel at least)."""
    step = max(1, elements // max(1, plane))
    return [(c, min(channels, c + step)) for c in range(0, channels, step)]


def _group_params(net: GainedMeanScaleHyperprior, hs: Tensor, gain: Tensor, c0: int, c1: int) -> tuple[Tensor, Tensor]:
    """Scales and means of channels c0:c1, gained: ``entropy_params`` restricted to them."""
    m = net.M
    g = gain[:, c0:c1]
    return hs[:, c0:c1] * g, hs[:, m + c0 : m + c1] * g


def compress_gained_grouped(
    net: GainedMeanScaleHyperprior, y_g: Tensor, z: Tensor, q: Tensor, elements: int = GROUP_ELEMENTS
) -> dict[str, object]:
    """``net.compress_gained(y_g, z, q)`` channel group by channel group: same strings and symbols."""
    if not (torch.isfinite(y_g).all() and torch.isfinite(z).all()):
        raise FloatingPointError("the latents to code are not finite (NaN or inf)")
    gc = net.gaussian_conditional
    z_strings = net.entropy_bottleneck.compress(z)
    z_hat = net.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
    hs = net.mixed(net.h_s, z_hat)
    gain, _ = net.gains(q)
    tables = _Tables.of(gc)
    encoder = BufferedRansEncoder()
    y_sym = torch.empty(y_g.shape, dtype=torch.int32)
    for c0, c1 in channel_groups(net.M, y_g.shape[-2] * y_g.shape[-1], elements):
        scales, means = _group_params(net, hs, gain, c0, c1)
        indexes = gc.build_indexes(scales).reshape(-1)
        sym = gc.quantize(y_g[:, c0:c1], "symbols", means)
        y_sym[:, c0:c1] = sym
        flat = sym.reshape(-1)
        for s in range(0, flat.numel(), CODER_CHUNK):
            encoder.encode_with_indexes(
                flat[s : s + CODER_CHUNK].tolist(),
                indexes[s : s + CODER_CHUNK].tolist(),
                tables.cdf,
                tables.lengths,
                tables.offsets,
            )
    z_sym = torch.round(z_hat - net.z_medians()).to(torch.int32)
    return {"strings": [[encoder.flush()], z_strings], "shape": tuple(z.size()[-2:]), "symbols": [y_sym, z_sym]}


def decompress_grouped(
    net: GainedMeanScaleHyperprior,
    strings: list[list[bytes]],
    shape: tuple[int, int],
    q: Tensor,
    hasher: SymbolsHasher,
    elements: int = GROUP_ELEMENTS,
) -> Tensor:
    """The synthesis input ``y_hat * inv_gain``, as ``net.decompress_latents`` gives it, channel
    group by channel group; the decoded symbols (y, then z) go into ``hasher`` as they come, so
    they are never all held at once."""
    gc = net.gaussian_conditional
    z_hat = net.entropy_bottleneck.decompress(strings[1], shape)
    hs = net.mixed(net.h_s, z_hat)
    gain, inv_gain = net.gains(q)
    tables = _Tables.of(gc)
    rows, cols = hs.shape[-2], hs.shape[-1]
    y = torch.empty(1, net.M, rows, cols)
    decoder = RansDecoder()
    decoder.set_stream(strings[0][0])
    for c0, c1 in channel_groups(net.M, rows * cols, elements):
        scales, means = _group_params(net, hs, gain, c0, c1)
        indexes = gc.build_indexes(scales).reshape(-1)
        out = torch.empty(indexes.numel(), dtype=torch.int32)
        for s in range(0, indexes.numel(), CODER_CHUNK):
            part = indexes[s : s + CODER_CHUNK].tolist()
            out[s : s + len(part)] = torch.tensor(
                decoder.decode_stream(part, tables.cdf, tables.lengths, tables.offsets), dtype=torch.int32
            )
        sym = out.reshape(means.shape)
        hasher.update(sym)  # channels c0:c1 of the (1, M, rows, cols) symbols: their bytes, in order
        y[:, c0:c1] = (sym.float() + means) * inv_gain[:, c0:c1]
    hasher.update(torch.round(z_hat - net.z_medians()).to(torch.int32))
    return y
