"""Decoding bitstreams that carry per-image adapters or OMP multipliers."""

from __future__ import annotations

import torch
from torch import Tensor

from codec.adaptation.adapters import apply_adapter, omp_values, split_params, unpack_adapters
from codec.adaptation.synthesis import channels_after, run_layers
from codec.bitstream import BitstreamError, Container, Section
from codec.models.gained import GainedMeanScaleHyperprior
from codec.zoo.registry import BaseModel, _padded


def adapted_decompress(
    base: BaseModel, c: Container, strings: list[list[bytes]], shape: tuple[int, int], level: float
) -> tuple[Tensor, list[Tensor]]:
    net = base.net
    if not isinstance(net, GainedMeanScaleHyperprior):
        raise BitstreamError(f"bitstream has decoder adapters, which model {base.name} does not support")
    g_s = net.g_s
    hooks = {}
    extra_symbols: list[Tensor] = []
    if Section.ADAPTERS in c.sections:
        specs, ints, flat = unpack_adapters(c.sections[Section.ADAPTERS])
        extra_symbols.append(torch.tensor(ints, dtype=torch.int32))
        for spec, (a, b) in zip(specs, split_params(flat, specs), strict=True):
            if not (0 <= spec.position < len(g_s) - 1) or channels_after(g_s, spec.position) != spec.channels:
                raise BitstreamError("bitstream is corrupt (adapter layout does not fit the model)")
            if spec.position in hooks:
                raise BitstreamError("bitstream is corrupt (two adapters at one position)")
            hooks[spec.position] = lambda f, a=a, b=b: apply_adapter(f, a, b)
    if Section.OMP in c.sections:
        position, values = omp_values(c.sections[Section.OMP])
        if not (0 <= position < len(g_s) - 1) or channels_after(g_s, position) != values.numel() or position in hooks:
            raise BitstreamError("bitstream is corrupt (OMP layout does not fit the model)")
        scale = values.view(1, -1, 1, 1)
        hooks[position] = lambda f, s=scale: f * s
    q = base.level_tensor(level)
    y_hat, p, symbols = net.decompress_latents(_padded(net, strings, shape), shape, q)
    x_hat = run_layers(g_s, y_hat * p.inv_gain, hooks=hooks).clamp_(0, 1)
    return x_hat, symbols + extra_symbols
