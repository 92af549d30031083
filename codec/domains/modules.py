"""Conv-Adapters and LoRA-Adapters on a gained hyperprior, and baking them into a plain model.

Seed 004: a 1x1 convolution (identity weights, zero bias) after every non-linear block of the
analysis and synthesis transforms re-allocates channels for the domain; LoRA (rank r, A Gaussian,
B zero) on the entropy-parameter network (our h_s) follows. Training uses the unmerged form; a
trained adapter is *baked*: the 1x1 convs become ordinary layers of g_a/g_s and the LoRA products
are merged into h_s's weights (in canonical compute, so every decoder gets the same floats). A baked
model is a normal :class:`GainedMeanScaleHyperprior`, so coding, decoding and per-image adaptation
work on it unchanged.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from compressai.layers import GDN
from torch import Tensor, nn
from torch.nn import functional as F

from codec.determinism import canonical_compute
from codec.models.gained import GainedMeanScaleHyperprior


class ConvAdapter(nn.Conv2d):
    """1x1 convolution initialised to the identity (so an untrained adapter changes nothing)."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, kernel_size=1, bias=True)
        with torch.no_grad():
            self.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
            self.bias_tensor().zero_()

    def bias_tensor(self) -> Tensor:
        """The bias (built with ``bias=True``, so always there; typed as such for the checker)."""
        if self.bias is None:
            raise RuntimeError("a ConvAdapter is built with a bias")
        return self.bias


class LoRAConv(nn.Module):
    """A frozen conv or transposed conv whose weight gets ``B @ A`` (rank r) added."""

    def __init__(self, layer: nn.Conv2d | nn.ConvTranspose2d, rank: int):
        super().__init__()
        self.layer = layer
        w = layer.weight
        fan = w[0].numel()
        self.A = nn.Parameter(torch.randn(rank, fan) / fan**0.5)
        self.B = nn.Parameter(torch.zeros(w.shape[0], rank))

    def merged_weight(self) -> Tensor:
        return self.layer.weight + (self.B @ self.A).view_as(self.layer.weight)

    def forward(self, x: Tensor) -> Tensor:
        layer, w = self.layer, self.merged_weight()
        if isinstance(layer, nn.ConvTranspose2d):
            padding = cast(tuple[int, ...], layer.padding)  # a string only for Conv2d's "same"/"valid"
            return F.conv_transpose2d(
                x, w, layer.bias, layer.stride, padding, layer.output_padding, layer.groups, layer.dilation
            )
        return F.conv2d(x, w, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)


def _with_adapters(seq: nn.Sequential) -> nn.Sequential:
    layers: list[nn.Module] = []
    for layer in seq:
        layers.append(layer)
        if isinstance(layer, GDN):
            layers.append(ConvAdapter(int(layer.beta.numel())))
    return nn.Sequential(*layers)


def attach(base: GainedMeanScaleHyperprior, rank: int = 10) -> GainedMeanScaleHyperprior:
    """A trainable copy of ``base``: adapters inserted, everything else frozen."""
    net = copy.deepcopy(base).requires_grad_(False)
    net.g_a = _with_adapters(net.g_a)
    net.g_s = _with_adapters(net.g_s)
    net.h_s = nn.Sequential(
        *[LoRAConv(m, rank) if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) else m for m in net.h_s]
    )
    for m in net.modules():
        if isinstance(m, ConvAdapter):
            m.requires_grad_(True)
        if isinstance(m, LoRAConv):
            m.A.requires_grad_(True)
            m.B.requires_grad_(True)
    return net


def adapter_parameters(net: nn.Module) -> list[nn.Parameter]:
    return [p for p in net.parameters() if p.requires_grad]


def adapter_state(net: GainedMeanScaleHyperprior) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(decoder-side, encoder-side) adapter tensors of an attached model."""
    dec, enc = {}, {}
    for i, m in enumerate(net.g_s):
        if isinstance(m, ConvAdapter):
            dec[f"g_s.{i}.weight"], dec[f"g_s.{i}.bias"] = m.weight.detach().clone(), m.bias_tensor().detach().clone()
    for i, m in enumerate(net.h_s):
        if isinstance(m, LoRAConv):
            dec[f"h_s.{i}.A"], dec[f"h_s.{i}.B"] = m.A.detach().clone(), m.B.detach().clone()
    for i, m in enumerate(net.g_a):
        if isinstance(m, ConvAdapter):
            enc[f"g_a.{i}.weight"], enc[f"g_a.{i}.bias"] = m.weight.detach().clone(), m.bias_tensor().detach().clone()
    return dec, enc


def bake(
    base: GainedMeanScaleHyperprior, decoder: dict[str, Tensor], encoder: dict[str, Tensor] | None, rank: int
) -> GainedMeanScaleHyperprior:
    """A plain model with the adapters built in. Without ``encoder`` (decoder side only) g_a keeps
    identity adapters: such a model decodes exactly, and encodes like the base."""
    net = attach(base, rank)
    with torch.no_grad():
        for key, value in {**decoder, **(encoder or {})}.items():
            part, idx, name = key.split(".")
            module = getattr(net, part)[int(idx)]
            getattr(module, name).copy_(value.float())
        with canonical_compute():  # the same merged floats on every decoder
            merged = {i: m.merged_weight() for i, m in enumerate(net.h_s) if isinstance(m, LoRAConv)}
        # outside inference mode: an inference tensor as a weight would break every later use of the
        # model under autograd (the adaptive encode optimises latents through it)
        net.h_s = nn.Sequential(
            *[_merged(m, merged[i]) if isinstance(m, LoRAConv) else m for i, m in enumerate(net.h_s)]
        )
    return net.eval().requires_grad_(False)


def _merged(m: LoRAConv, weight: Tensor) -> nn.Module:
    layer = copy.deepcopy(m.layer)
    layer.weight = nn.Parameter(weight.clone(), requires_grad=False)  # clone: a normal tensor, same values
    return layer
