"""Running the synthesis transform layer by layer, with adapters or channel scales in between.

The encoder uses ``start``/``stop`` to compute everything before the first adapter once (the
latents are fixed during adapter training) and only the tail per iteration; the decoder uses the
same function for the whole pass, so both see exactly the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.subpixel import SubPixelConvTranspose2d

Hook = Callable[[Tensor], Tensor]


def run_layers(
    seq: nn.Sequential, x: Tensor, start: int = 0, stop: int | None = None, hooks: dict[int, Hook] | None = None
) -> Tensor:
    """Apply ``seq[start:stop]``; ``hooks[i]`` is applied to the output of layer ``i``."""
    hooks = hooks or {}
    end = len(seq) if stop is None else stop
    for i in range(start, end):
        x = seq[i](x)
        if i in hooks:
            x = hooks[i](x)
    return x


def channels_after(seq: nn.Sequential, position: int) -> int:
    """Number of channels of the output of ``seq[position]`` (conv or GDN layers, or a block that
    declares ``out_channels``, as ``codec.zoo.context_models.Declared`` does)."""
    for i in range(position, -1, -1):
        layer = seq[i]
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            return int(layer.out_channels)
        declared = getattr(layer, "out_channels", None)
        if isinstance(declared, int):
            return declared
        beta = getattr(layer, "beta", None)
        if isinstance(beta, Tensor):  # GDN
            return int(beta.numel())
    raise ValueError(f"cannot tell the channels after layer {position}")


def default_adapter_positions(seq: nn.Sequential) -> tuple[int, ...]:
    """Late in the decoder (seed 001): after the last non-linearity before the output layer."""
    for i in range(len(seq) - 2, -1, -1):
        if not hasattr(seq[i], "out_channels"):  # GDN / activation
            return (i,)
    return (len(seq) - 2,)


LinearLayer = nn.Conv2d | nn.ConvTranspose2d


def linear_tail(seq: nn.Sequential, position: int) -> LinearLayer | None:
    """The layer after ``position`` when it is the last one and a plain convolution, else None.

    Then an adapter at ``position`` can be pushed through it (:func:`low_rank_through`): the
    adapter stage no longer runs the full-resolution output layer per step, only a convolution
    with ``rank`` input channels (the default adapter sits just before the output layer).
    """
    if position + 2 != len(seq):
        return None
    layer = seq[position + 1]
    exact = (nn.Conv2d, nn.ConvTranspose2d, SubPixelConvTranspose2d)  # the last: the same function
    if not isinstance(layer, nn.Conv2d | nn.ConvTranspose2d) or type(layer) not in exact:
        return None  # exactly a convolution: a subclass may compute something else
    if layer.groups != 1 or layer.padding_mode != "zeros":
        return None
    return layer


def low_rank_through(layer: LinearLayer, b: Tensor, h: Tensor) -> Tensor:
    """``layer`` without its bias applied to ``B h`` (B: (C, r), h: r channels), as one convolution with
    ``r`` input channels. The layer is linear, so ``layer(f + B h) == layer(f) + low_rank_through(layer, b, h)``
    up to float rounding."""
    if isinstance(layer, nn.ConvTranspose2d):
        w = torch.einsum("cr,cokl->rokl", b, layer.weight.float())
        out_pad = tuple(layer.output_padding)
        return F.conv_transpose2d(h, w, None, layer.stride, layer.padding, out_pad, 1, layer.dilation)  # type: ignore[arg-type]
    w = torch.einsum("cr,ockl->orkl", b, layer.weight.float())
    return F.conv2d(h, w, None, layer.stride, layer.padding, layer.dilation)
