"""The two hashes a bitstream carries, so that a decoder refuses instead of producing garbage.

:func:`weights_hash` names the exact weights *and* probability tables a bitstream was coded with
(same model name with other weights must not decode); :func:`symbols_hash` catches an entropy model
that decodes differently here (another platform) or a crafted payload.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn


def weights_hash(module: nn.Module) -> bytes:
    """8-byte BLAKE2b of every parameter and buffer (probability tables included), in float32."""
    h = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        if t.is_floating_point():
            t = t.float()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes())
    return h.digest()


class SymbolsHasher:
    """:func:`symbols_hash` fed piece by piece, in coding order: a decoder can hash each channel
    group of y as it decodes it instead of keeping all the y symbols (96 MB at 48 Mpixel) for the
    check. The pieces must be what the whole tensors' bytes are, in order: channel groups of a
    ``(1, C, H, W)`` tensor are."""

    def __init__(self) -> None:
        self._h = hashlib.blake2b(digest_size=4)

    def update(self, symbols: Tensor) -> None:
        # the array itself, not ``tobytes()``: a copy of the y symbols was the decode's peak
        self._h.update(symbols.to(torch.int32).contiguous().numpy().data)

    def digest(self) -> bytes:
        return self._h.digest()


def symbols_hash(symbols: list[Tensor], start: SymbolsHasher | None = None) -> bytes:
    """4-byte hash of the coded integer symbols: decoders check it to catch a desynchronised
    entropy model (different platform) or a crafted payload, instead of returning garbage.
    ``start``: the symbols already hashed while decoding (they come first)."""
    h = start or SymbolsHasher()
    for t in symbols:
        h.update(t)
    return h.digest()
