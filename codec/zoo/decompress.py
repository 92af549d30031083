"""Decoding helpers shared by every model kind: safe padding of strings, and CompressAI's plain
hyperprior decode redone so that it also returns the integer symbols.

The symbols are what :func:`codec.zoo.hashing.symbols_hash` covers; CompressAI's own
``decompress`` throws them away, so for its (Mean)ScaleHyperprior the few lines are repeated here
with the symbols kept. The arithmetic is CompressAI's, in the same order (same pixels).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

#: CompressAI classes whose decode :func:`hyperprior_decompress` reproduces (symbols included)
PLAIN_HYPERPRIORS = ("ScaleHyperprior", "MeanScaleHyperprior")


def padded_strings(net: nn.Module, strings: list[list[bytes]], shape: tuple[int, int]) -> list[list[bytes]]:
    """``strings`` with zeros appended: the rANS decoder reads ahead without bounds checks, so a
    crafted (short) string must not let it run past its buffer. Zeros past the end change nothing
    for a well-formed string."""
    h, w = shape
    m = int(getattr(net, "M", 320))
    n = int(getattr(net, "Nh", getattr(net, "N", 192)))
    y_pad = bytes(8 * m * h * w * 16 + 64)
    z_pad = bytes(8 * n * h * w + 64)
    return [[s + y_pad for s in strings[0]], [s + z_pad for s in strings[1]], *strings[2:]]


def is_plain_hyperprior(net: nn.Module) -> bool:
    """By class name: a subclass may code differently, so only these exact classes qualify."""
    return type(net).__name__ in PLAIN_HYPERPRIORS


def hyperprior_decompress(
    net: nn.Module, strings: list[list[bytes]], shape: tuple[int, int]
) -> tuple[Tensor, list[Tensor]]:
    """CompressAI's (Mean)ScaleHyperprior.decompress, also returning the integer symbols."""
    model: Any = net  # a CompressAI model: its entropy models and transforms carry no types
    eb, gc = model.entropy_bottleneck, model.gaussian_conditional
    z_hat = eb.decompress(strings[1], shape)
    params = model.h_s(z_hat)
    means = None
    if type(net).__name__ == "MeanScaleHyperprior":
        params, means = params.chunk(2, 1)
    indexes = gc.build_indexes(params)
    y_sym = gc.decompress(strings[0], indexes, z_hat.dtype)
    y_hat = y_sym + means if means is not None else y_sym
    x_hat = model.g_s(y_hat).clamp_(0, 1)
    z_sym = torch.round(z_hat - eb._get_medians().reshape(1, -1, 1, 1)).to(torch.int32)
    return x_hat, [y_sym.to(torch.int32), z_sym]
