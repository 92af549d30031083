"""Decoder adapters sent with the bitstream (seed 001), and the OMP alternative (000, Zou et al.).

An *adapter* is a residual low-rank 1x1 convolution ``f + B(A(f))`` inserted after a layer of the
synthesis transform (A: C -> r, B: r -> C). Its weights are optimised for rate + distortion: the
decoder sees them rounded to a grid of width ``delta`` (straight-through), the rate term sees them
with uniform noise under a logistic prior of scale ``scale``; then they are quantised to integers
and entropy-coded with rANS under that same discretised logistic. Their bytes count in bpp.

*OMP* (overfittable multiplicative parameters) scales each channel at one position; optimised for
distortion only and sent as 8 bits per channel plus a float32 range, as in the papers' baseline.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import torch
from compressai._CXX import pmf_to_quantized_cdf
from compressai.ans import RansDecoder, RansEncoder
from torch import Tensor

from codec.bitstream import BitstreamError

ADAPTER_FORMAT = 1
PRECISION = 16
MAX_SYMBOL = 120  # |k| above this goes through rANS bypass coding (rare)


@dataclass(frozen=True)
class AdapterSpec:
    """Where an adapter sits (index into the synthesis Sequential: applied after that layer)."""

    position: int
    channels: int
    rank: int

    @property
    def size(self) -> int:
        return 2 * self.channels * self.rank


def apply_adapter(feat: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``feat + B(A(feat))`` with A (r, C) and B (C, r) as 1x1 convolutions."""
    h = torch.einsum("rc,nchw->nrhw", a, feat)
    return feat + torch.einsum("cr,nrhw->nchw", b, h)


def split_params(flat: Tensor, specs: list[AdapterSpec]) -> list[tuple[Tensor, Tensor]]:
    out, i = [], 0
    for s in specs:
        a = flat[i : i + s.rank * s.channels].view(s.rank, s.channels)
        i += s.rank * s.channels
        b = flat[i : i + s.channels * s.rank].view(s.channels, s.rank)
        i += s.channels * s.rank
        out.append((a, b))
    return out


def logistic_bits(w: Tensor, delta: float, scale: float) -> Tensor:
    """Bits of ``w`` (continuous, noisy) under the logistic prior discretised to width ``delta``."""
    upper = torch.sigmoid((w + delta / 2) / scale)
    lower = torch.sigmoid((w - delta / 2) / scale)
    return -torch.log2((upper - lower).clamp_min(1e-9)).sum()


def as_stored(value: float) -> float:
    """The value as the container stores it (float16): encoder and decoder must use exactly this."""
    return float(np.float16(value))


def _cdf(delta: float, scale: float) -> tuple[list[int], int]:
    delta, scale = as_stored(delta), as_stored(scale)
    ks = np.arange(-MAX_SYMBOL, MAX_SYMBOL + 1, dtype=np.float64)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    pmf = sig((ks + 0.5) * delta / scale) - sig((ks - 0.5) * delta / scale)
    tail = max(1e-9, 1.0 - float(pmf.sum()))
    cdf = pmf_to_quantized_cdf([*pmf.tolist(), tail], PRECISION)
    return list(cdf), len(cdf)


def encode_ints(values: list[int], delta: float, scale: float) -> bytes:
    cdf, length = _cdf(delta, scale)
    return RansEncoder().encode_with_indexes(values, [0] * len(values), [cdf], [length], [-MAX_SYMBOL])


def decode_ints(data: bytes, count: int, delta: float, scale: float) -> list[int]:
    cdf, length = _cdf(delta, scale)
    padded = data + bytes(8 * count + 64)  # never read past the buffer, whatever the input
    return list(RansDecoder().decode_with_indexes(padded, [0] * count, [cdf], [length], [-MAX_SYMBOL]))


# ------------------------------------------------------------------ serialisation
def pack_adapters(specs: list[AdapterSpec], ints: list[int], delta: float, scale: float) -> bytes:
    head = struct.pack("<BBee", ADAPTER_FORMAT, len(specs), delta, scale)
    for s in specs:
        head += struct.pack("<BBH", s.position, s.rank, s.channels)
    return head + encode_ints(ints, delta, scale)


def unpack_adapters(payload: bytes, max_channels: int = 4096) -> tuple[list[AdapterSpec], list[int], Tensor]:
    """Specs, the integer weights, and the dequantised flat weights (float32). Every field is checked."""
    try:
        fmt, n, delta, scale = struct.unpack_from("<BBee", payload, 0)
    except struct.error:
        raise BitstreamError("bitstream is corrupt (adapter section too short)") from None
    if fmt != ADAPTER_FORMAT:
        raise BitstreamError(f"adapter section format {fmt} is not supported")
    if not (0 < n <= 8) or not (delta > 0 and scale > 0 and math.isfinite(delta) and math.isfinite(scale)):
        raise BitstreamError("bitstream is corrupt (adapter header)")
    specs, off = [], 6
    for _ in range(n):
        try:
            pos, rank, ch = struct.unpack_from("<BBH", payload, off)
        except struct.error:
            raise BitstreamError("bitstream is corrupt (adapter layout truncated)") from None
        if not (0 < rank <= 64 and 0 < ch <= max_channels):
            raise BitstreamError("bitstream is corrupt (adapter layout)")
        specs.append(AdapterSpec(pos, ch, rank))
        off += 4
    count = sum(s.size for s in specs)
    ints = decode_ints(payload[off:], count, float(delta), float(scale))
    return specs, ints, dequantise(ints, float(delta))


def dequantise(ints: list[int], delta: float) -> Tensor:
    """Integer weights -> float32 weights, identically at the encoder and the decoder."""
    return torch.tensor(ints, dtype=torch.float32) * torch.tensor(as_stored(delta), dtype=torch.float32)


def pack_omp(position: int, values: Tensor) -> bytes:
    """8-bit linear quantisation of per-channel multipliers (position, min, max, bytes)."""
    v = values.detach().float().cpu()
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo if hi > lo else 1.0
    q = torch.round((v - lo) / span * 255).clamp(0, 255).to(torch.uint8)
    return struct.pack("<Bff", position, lo, hi) + bytes(q.tolist())


def omp_values(payload: bytes) -> tuple[int, Tensor]:
    try:
        position, lo, hi = struct.unpack_from("<Bff", payload, 0)
    except struct.error:
        raise BitstreamError("bitstream is corrupt (OMP section too short)") from None
    q = torch.tensor(list(payload[9:]), dtype=torch.float32)
    if q.numel() == 0 or not (math.isfinite(lo) and math.isfinite(hi)):
        raise BitstreamError("bitstream is corrupt (OMP section)")
    span = hi - lo if hi > lo else 1.0
    return position, lo + q / 255.0 * span


def dequantised_omp(values: Tensor) -> Tensor:
    """What the decoder will see after 8-bit quantisation (for the encoder's own accounting)."""
    _, v = omp_values(pack_omp(0, values))
    return v
