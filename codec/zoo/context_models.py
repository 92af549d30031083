"""CompressAI's autoregressive context models (``mbt2018``, ``cheng2020-anchor``, ``cheng2020-attn``):
their serial coding with the integer symbols kept, their synthesis as a flat sequence of layers,
and what they cost.

Both the encoder and the decoder call the model's own serial loops (``_compress_ar`` and
``_decompress_ar``, what CompressAI's ``compress``/``decompress`` run), so the bytes are exactly
CompressAI's. Those loops do not return the integer symbols that the symbol hash covers; each fills
its padded ``y_hat`` with ``symbol + mean``, so the symbols are recovered as
``round(y_hat - mean)`` with the means of one parallel (masked-convolution) pass over the finished
``y_hat``: it sees the same causal neighbourhood as the serial pass, so its means differ from the
serial ones by float rounding only, far below the 0.5 that would change a rounded integer.

The synthesis view (:func:`synthesis_view`) is what the adapters hook into and what the decoder
runs: ``mbt2018``'s ``g_s`` as it is (convolutions and GDNs); for ``cheng2020-*`` the same modules,
each block wrapped so that it declares its output channels (residual blocks are not plain layers,
and an adapter's layout is checked against the channels after its position).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: CompressAI classes coded by :func:`serial_compress` / :func:`serial_decompress` (exact names: a
#: subclass may code differently)
CONTEXT_MODELS = ("JointAutoregressiveHierarchicalPriors", "Cheng2020Anchor", "Cheng2020Attention")
_KERNEL, _PAD, _Z_TO_Y = 5, 2, 4  # CompressAI's context kernel, its padding, and y's size over z's

#: serial coding of a 768x512 image on one CPU thread, measured on this project's shared 2-core
#: machine from quiet to heavily loaded (docs/guide/zoo-adaptation.md, ``scripts/context_coding_time.py``):
#: encode seconds, decode seconds, each as (least, most)
SERIAL_SECONDS_768x512 = ((2.4, 27.0), (6.3, 58.0))


def is_context_model(net: nn.Module) -> bool:
    return type(net).__name__ in CONTEXT_MODELS


def coding_notice(net: nn.Module) -> str | None:
    """What a user should know before coding with ``net``: for a context model, that its entropy
    coding is serial and slow (None for every other model)."""
    if not is_context_model(net):
        return None
    (enc_lo, enc_hi), (dec_lo, dec_hi) = SERIAL_SECONDS_768x512
    return (
        f"{type(net).__name__} codes its latents serially (autoregressive context, one CPU core): "
        f"{enc_lo:.0f}-{enc_hi:.0f} s to encode and {dec_lo:.0f}-{dec_hi:.0f} s to decode a 768x512 image "
        "(idle to busy machine), growing with the pixel count; every encode is verified by a decode, and "
        "an adaptive encode codes up to three candidate files after its optimisation"
    )


class Declared(nn.Module):
    """A block of a synthesis, unchanged, that says how many channels it outputs."""

    def __init__(self, block: nn.Module, out_channels: int):
        super().__init__()
        self.block, self.out_channels = block, out_channels

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.block(x)
        return out


def synthesis_view(net: nn.Module) -> nn.Sequential:
    """The synthesis the adapters hook into and the decoder runs, with the model's own modules:
    ``g_s`` itself for convolution/GDN stacks, the blocks of ``cheng2020-*`` wrapped in
    :class:`Declared` (all N channels, 3 for the last)."""
    model: Any = net
    g_s: nn.Sequential = model.g_s
    if not type(net).__name__.startswith("Cheng2020"):
        return g_s
    n, last = int(model.N), len(g_s) - 1
    return nn.Sequential(*(Declared(layer, 3 if i == last else n) for i, layer in enumerate(g_s)))


def context_params(net: nn.Module, y_hat: Tensor, hyper: Tensor) -> tuple[Tensor, Tensor]:
    """(scales, means) of every y position in one parallel pass: the masked context convolution
    over ``y_hat`` and the entropy-parameter network on it with the hyper-synthesis output. The
    masked weight is formed as the serial encoder forms it (the module's own forward would write
    the masked weight into the model)."""
    model: Any = net
    cp = model.context_prediction
    ctx = F.conv2d(y_hat, cp.weight * cp.mask, cp.bias, padding=_PAD)
    scales, means = model.entropy_parameters(torch.cat((hyper, ctx), dim=1)).chunk(2, 1)
    return scales, means


def _symbols(net: nn.Module, y_hat: Tensor, hyper: Tensor) -> Tensor:
    """The integer symbols of a serially coded ``y_hat`` (see the module notes)."""
    _, means = context_params(net, y_hat, hyper)
    return torch.round(y_hat - means).to(torch.int32)


def _z_symbols(net: nn.Module, z_hat: Tensor) -> Tensor:
    eb: Any = getattr(net, "entropy_bottleneck")  # noqa: B009 (CompressAI's modules carry no types)
    return torch.round(z_hat - eb._get_medians().reshape(1, -1, 1, 1)).to(torch.int32)


def serial_compress(net: nn.Module, y: Tensor, z: Tensor) -> tuple[list[list[bytes]], list[Tensor]]:
    """(strings [y, z], symbols [y, z]) of given latents: CompressAI's ``compress`` after its
    analysis (z coded by the factorised prior, y by the model's serial loop). Call under
    canonical compute; one image."""
    model: Any = net
    z_strings = model.entropy_bottleneck.compress(z)
    z_hat = model.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
    hyper = model.h_s(z_hat)
    height, width = z_hat.size(2) * _Z_TO_Y, z_hat.size(3) * _Z_TO_Y
    y_pad = F.pad(y, (_PAD, _PAD, _PAD, _PAD))  # the serial loop writes y_hat into it as it codes
    y_string = model._compress_ar(y_pad, hyper, height, width, _KERNEL, _PAD)
    y_hat = y_pad[..., _PAD:-_PAD, _PAD:-_PAD]
    return [[y_string], z_strings], [_symbols(net, y_hat, hyper), _z_symbols(net, z_hat)]


def serial_decompress(
    net: nn.Module, strings: list[list[bytes]], shape: tuple[int, int]
) -> tuple[Tensor, list[Tensor]]:
    """(y_hat, symbols [y, z]): CompressAI's ``decompress`` up to the synthesis (strings already
    zero-padded by the caller). Call under canonical compute."""
    model: Any = net
    z_hat = model.entropy_bottleneck.decompress(strings[1], shape)
    hyper = model.h_s(z_hat)
    height, width = z_hat.size(2) * _Z_TO_Y, z_hat.size(3) * _Z_TO_Y
    y_pad = torch.zeros((1, int(model.M), height + 2 * _PAD, width + 2 * _PAD), device=z_hat.device)
    model._decompress_ar(strings[0][0], y_pad, hyper, height, width, _KERNEL, _PAD)
    y_hat = y_pad[..., _PAD:-_PAD, _PAD:-_PAD].contiguous()
    return y_hat, [_symbols(net, y_hat, hyper), _z_symbols(net, z_hat)]
