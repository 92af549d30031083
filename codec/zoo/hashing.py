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


def symbols_hash(symbols: list[Tensor]) -> bytes:
    """4-byte hash of the coded integer symbols: decoders check it to catch a desynchronised
    entropy model (different platform) or a crafted payload, instead of returning garbage."""
    h = hashlib.blake2b(digest_size=4)
    for t in symbols:
        h.update(t.to(torch.int32).contiguous().numpy().tobytes())
    return h.digest()
