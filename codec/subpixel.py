"""A strided transposed convolution computed as a sub-pixel convolution (conv + pixel shuffle).

Why: on this CPU, PyTorch's transposed convolution with few output channels is slow. The
synthesis' last layer (N -> 3 channels, 5x5, stride 2, at full resolution) is a large part of a
decoded tile's time: measured on one thread, channels-last, idle machine, for the default model's
96 -> 3 layer on one tile (288x288 input), 0.059 s as a transposed convolution against 0.025 s as
the equivalent convolution with ``stride² x 3`` output channels followed by a pixel shuffle
(``python -m codec.evaluation.subpixel_bench``). The wide layers lose (96 -> 96 channels at
144x144: 0.086 s against 0.124 s), so only the last layer is rewritten.

The two compute the same function; in floats they add the products in a different order, so a
few 8-bit pixels can differ by one level, as between thread counts. The canonical decode
(``--bit-exact``, the encoder's own check) therefore keeps the transposed convolution. Two paths use
this one: the default, non-bit-exact decode (``codec.decoding``), and the adaptive encoder's
optimisation copy of the model (``AdaptConfig.subpixel``), whose result is coded canonically.

For output row ``o = s q + a`` (phase ``a``), a transposed convolution adds input row ``q + m``
with kernel row ``a + p - s m`` for every ``m`` that keeps that index inside the kernel. The
sub-pixel convolution gathers, for each phase, those kernel taps at offsets ``m``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _offsets(kernel: int, stride: int, padding: int) -> range:
    """The input offsets m that some phase reads: a + p - s m in [0, kernel) for some a < s."""
    lo = -((kernel - 1 - padding) // stride)  # smallest m with (s-1) + p - s m <= kernel - 1
    hi = (stride - 1 + padding) // stride  # largest m with p + (s-1) - s m >= 0
    return range(lo, hi + 1)


def applies(layer: nn.Module) -> bool:
    """Whether ``layer`` is a transposed convolution this module can rewrite exactly: one group, no
    dilation, square stride, and an output exactly ``stride`` times its input."""
    if not isinstance(layer, nn.ConvTranspose2d) or layer.groups != 1 or layer.dilation != (1, 1):
        return False
    padding = layer.padding
    if isinstance(padding, str):  # never for a transposed convolution; for the type checker
        return False
    (sh, sw), (kh, kw), (ph, pw) = layer.stride, layer.kernel_size, padding
    oph, opw = layer.output_padding
    # output (H - 1) s - 2p + k + op == s H
    return sh == sw and (kh, ph, oph) == (kw, pw, opw) and kh - sh - 2 * ph + oph == 0


def subpixel_weight(weight: Tensor, stride: int, padding: int) -> Tensor:
    """The convolution weight (out * s², in, K, K) equivalent to the transposed-convolution weight
    ``weight`` (in, out, k, k); output channel ``c s² + a s + b`` is phase (a, b) of channel c,
    the order ``F.pixel_shuffle`` expects."""
    cin, cout, k, _ = weight.shape
    offs = _offsets(k, stride, padding)
    taps = len(offs)
    w = weight.new_zeros(cout, stride, stride, cin, taps, taps)
    for a in range(stride):
        for i, m in enumerate(offs):
            ki = a + padding - stride * m
            if not 0 <= ki < k:
                continue
            for b in range(stride):
                for j, n in enumerate(offs):
                    kj = b + padding - stride * n
                    if 0 <= kj < k:
                        w[:, a, b, :, i, j] = weight[:, :, ki, kj].t()
    return w.reshape(cout * stride * stride, cin, taps, taps)


def conv_transpose_subpixel(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int, kernel: int
) -> Tensor:
    """``F.conv_transpose2d(x, weight, bias, stride, padding, output_padding)`` for a layer that
    :func:`applies`, as a convolution and a pixel shuffle."""
    w = subpixel_weight(weight, stride, padding).to(x.dtype)
    b = None if bias is None else bias.repeat_interleave(stride * stride).to(x.dtype)
    return _conv_shuffle(x, w, b, stride, _offsets(kernel, stride, padding))


def _conv_shuffle(x: Tensor, w: Tensor, b: Tensor | None, stride: int, offs: range) -> Tensor:
    """The gathered convolution and the pixel shuffle."""
    before, after = -offs[0], offs[-1]  # input rows read before and after each position
    if before == after:  # the usual case (5x5, stride 2, padding 2): no padded copy of x
        out = F.conv2d(x, w, b, padding=before)
    else:
        out = F.conv2d(F.pad(x, (before, after, before, after)), w, b)
    return F.pixel_shuffle(out, stride)


def run_layer(layer: nn.ConvTranspose2d, x: Tensor, weight: Tensor | None = None) -> Tensor:
    """``layer`` on ``x`` as a sub-pixel convolution, optionally with another weight of the same
    shape (a folded adapter map)."""
    w = layer.weight if weight is None else weight
    padding = layer.padding[0]
    assert isinstance(padding, int)  # a transposed convolution's padding is never a string
    return conv_transpose_subpixel(x, w, layer.bias, layer.stride[0], padding, layer.kernel_size[0])


class SubPixelConvTranspose2d(nn.ConvTranspose2d):
    """A transposed convolution that runs as a sub-pixel convolution: the same parameters and
    state dict (so it stands in for the original anywhere its weights are read), the same function
    up to float rounding. For optimisation copies and non-canonical paths only."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if output_size is not None:  # an explicit size may ask for other output padding
            return super().forward(x, output_size)
        if self.weight.requires_grad:  # trained: the gathered weight must stay in the graph
            return run_layer(self, x)
        # frozen (the adaptive encoder's copy): gather the weight once, not on every step
        padding = self.padding[0]
        assert isinstance(padding, int)  # a transposed convolution's padding is never a string
        key = (self.weight.data_ptr(), self.weight._version, x.dtype)
        cached = getattr(self, "_gathered", None)
        if cached is None or cached[0] != key:
            w = subpixel_weight(self.weight, self.stride[0], padding).to(x.dtype)
            b = None if self.bias is None else self.bias.repeat_interleave(self.stride[0] ** 2).to(x.dtype)
            cached = (key, w, b)
            self._gathered = cached
        return _conv_shuffle(
            x, cached[1], cached[2], self.stride[0], _offsets(self.kernel_size[0], self.stride[0], padding)
        )

    @classmethod
    def like(cls, layer: nn.ConvTranspose2d) -> SubPixelConvTranspose2d:
        """A sub-pixel layer sharing ``layer``'s parameters (call on a copy to keep them apart)."""
        c, w = layer, layer.weight
        new = cls(
            c.in_channels,
            c.out_channels,
            c.kernel_size,  # type: ignore[arg-type]
            c.stride,  # type: ignore[arg-type]
            c.padding,  # type: ignore[arg-type]
            c.output_padding,  # type: ignore[arg-type]
            c.groups,
            c.bias is not None,
            c.dilation,  # type: ignore[arg-type]
            c.padding_mode,
            device=w.device,
            dtype=w.dtype,
        )
        new.weight, new.bias = c.weight, c.bias
        return new


def with_subpixel_last(g_s: nn.Module | None) -> bool:
    """Make the last layer of the sequential synthesis ``g_s`` a sub-pixel one, in place, when
    :func:`applies`; returns whether it did. Use on a copy: the canonical coding needs the original."""
    if not isinstance(g_s, nn.Sequential) or len(g_s) == 0:
        return False
    last = g_s[-1]
    if type(last) is not nn.ConvTranspose2d or not applies(last):
        return False
    g_s[-1] = SubPixelConvTranspose2d.like(last)
    return True
