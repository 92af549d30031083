"""Decoding bitstreams that carry per-image adapters or OMP multipliers.

The adapters change only the synthesis, so a decode takes them in two steps: :func:`adapter_maps`
reads them from the container (cheap, before any entropy decoding) and :func:`run_folded` applies
them while synthesising. ``codec.decoding`` runs the steps in between (entropy decoding, the
symbol-hash check) in the same order for adapted and plain files.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec import subpixel
from codec.adaptation.adapters import omp_values, split_params, unpack_adapters
from codec.adaptation.synthesis import channels_after
from codec.bitstream import BitstreamError, Container, Section
from codec.models.gained import GainedMeanScaleHyperprior
from codec.models.wacnn import is_wacnn
from codec.zoo.base import BaseModel
from codec.zoo.context_models import is_context_model, synthesis_view
from codec.zoo.decompress import is_plain_hyperprior
from codec.zoo.decompress import padded_strings as _padded


def adapter_maps(base: BaseModel, c: Container) -> tuple[dict[int, Tensor], list[Tensor]]:
    """The channel maps a file's ADAPTERS/OMP sections ask for (layer index -> C x C map applied
    after that layer), and the integer symbols they add to the symbol hash. Checked against the
    model's layout, so a crafted section is refused before any entropy decoding."""
    net = base.net
    # the models codec.decoding synthesises through their g_s: gained, the plain zoo hyperpriors and
    # the context models (through their synthesis view)
    zoo = not base.variable_rate and (is_plain_hyperprior(net) or is_context_model(net) or is_wacnn(net))
    if not (isinstance(net, GainedMeanScaleHyperprior) or zoo):
        raise BitstreamError(f"bitstream has decoder adapters, which model {base.name} does not support")
    g_s = synthesis_view(net)
    hooks: dict[int, Tensor] = {}
    extra_symbols: list[Tensor] = []
    if Section.ADAPTERS in c.sections:
        specs, ints, flat = unpack_adapters(c.sections[Section.ADAPTERS])
        extra_symbols.append(torch.tensor(ints, dtype=torch.int32))
        for spec, (a, b) in zip(specs, split_params(flat, specs), strict=True):
            if not (0 <= spec.position < len(g_s) - 1) or channels_after(g_s, spec.position) != spec.channels:
                raise BitstreamError("bitstream is corrupt (adapter layout does not fit the model)")
            if spec.position in hooks:
                raise BitstreamError("bitstream is corrupt (two adapters at one position)")
            hooks[spec.position] = torch.eye(spec.channels) + b @ a  # feat + B(A feat)
    if Section.OMP in c.sections:
        position, values = omp_values(c.sections[Section.OMP])
        if not (0 <= position < len(g_s) - 1) or channels_after(g_s, position) != values.numel() or position in hooks:
            raise BitstreamError("bitstream is corrupt (OMP layout does not fit the model)")
        hooks[position] = torch.diag(values.flatten().float())
    return hooks, extra_symbols


def adapted_decompress(
    base: BaseModel, c: Container, strings: list[list[bytes]], shape: tuple[int, int], level: float
) -> tuple[Tensor, list[Tensor]]:
    """Whole adapted decode in one call (x_hat, symbols). ``codec.decoding`` does the same in
    stages, checking the symbols before the synthesis; this stays for callers that need neither."""
    hooks, extra_symbols = adapter_maps(base, c)
    net = base.net
    assert isinstance(net, GainedMeanScaleHyperprior)  # adapter_maps refused any other model
    y_hat, p, symbols = net.decompress_latents(_padded(net, strings, shape), shape, base.level_tensor(level))
    x_hat = run_folded(net.g_s, y_hat * p.inv_gain, hooks).clamp_(0, 1)
    return x_hat, symbols + extra_symbols


def run_folded(g_s: nn.Sequential, x: Tensor, maps: dict[int, Tensor], subpixel_last: bool = False) -> Tensor:
    """The synthesis with a linear channel map ``M`` (C x C) applied after layer ``i`` for each
    ``maps[i]``. Adapters (``I + B A``) and OMP (``diag(s)``) are such maps; where the next layer is
    a convolution, ``conv(W, M f) = conv(W M, f)``, so the map is folded into that layer's weights
    (a 48x3x5x5 product) instead of being applied to a full-resolution feature map: an adapted file
    then decodes at the cost of a plain one. Elsewhere it is applied to the features.

    ``subpixel_last`` runs a last transposed-convolution layer as a sub-pixel convolution
    (``codec.subpixel``: faster on CPU, the same function up to float rounding; not canonical)."""
    i, n = 0, len(g_s)
    while i < n:
        layer = g_s[i]
        fold = i - 1 in maps and isinstance(layer, nn.ConvTranspose2d | nn.Conv2d) and layer.groups == 1
        if subpixel_last and i == n - 1 and subpixel.applies(layer):
            assert isinstance(layer, nn.ConvTranspose2d)
            w = torch.einsum("pc,pokl->cokl", maps[i - 1], layer.weight) if fold else None
            x = subpixel.run_layer(layer, x, w)
        elif fold:
            m = maps[i - 1]
            if isinstance(layer, nn.ConvTranspose2d):  # weight (in, out, kh, kw): mix the input channels
                w = torch.einsum("pc,pokl->cokl", m, layer.weight)
                padding = cast(tuple[int, ...], layer.padding)  # a transposed conv's is never a string
                x = F.conv_transpose2d(x, w, layer.bias, layer.stride, padding, layer.output_padding, 1, layer.dilation)
            else:  # weight (out, in, kh, kw)
                assert isinstance(layer, nn.Conv2d)
                w = torch.einsum("oplk,pc->oclk", layer.weight, m)
                x = F.conv2d(x, w, layer.bias, layer.stride, layer.padding, layer.dilation, 1)
        else:
            if i - 1 in maps:
                x = torch.einsum("pc,nchw->nphw", maps[i - 1], x)
            x = layer(x)
        i += 1
    if n - 1 in maps:
        x = torch.einsum("pc,nchw->nphw", maps[n - 1], x)
    return x
