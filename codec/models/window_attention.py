"""The window attention module of WACNN (Zou, Song, Zhang, CVPR 2022), written from the paper.

WACNN's transforms interleave convolutions with a *window attention module* (WAM): a gated
residual block whose gate branch starts with multi-head self-attention inside non-overlapping
square windows (Swin-style, with a learned relative position bias), so that the block can weigh
detail inside a window by content instead of by a fixed kernel:

    out = x + trunk(x) * sigmoid(gate(x)),
    trunk = 3 residual units,  gate = window attention, 3 residual units, 1x1 convolution.

The authors' released models shift the windows by half a window (with the usual attention mask
between regions that the cyclic shift brings together), so this does too; otherwise the trained
weights would meet other features than they were trained on. Submodule and parameter names follow
the published checkpoints (``conv_a``, ``conv_b.0.attn.qkv`` ...), so they load strictly.

The feature map's sides must be multiples of the window size; the codec pads images to 64 pixels,
which gives multiples of 16 at 1/4 resolution (window 8) and of 4 at 1/16 (window 4).
"""

from __future__ import annotations

import torch
from compressai.layers import conv1x1, conv3x3
from torch import Tensor, nn

#: attention logit added between positions of different regions after the cyclic shift
_MASKED = -100.0


class ResidualUnit(nn.Module):
    """``gelu(x + conv1x1 -> gelu -> conv3x3 -> gelu -> conv1x1 (x))``, bottleneck at half width."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.conv = nn.Sequential(
            conv1x1(channels, half), nn.GELU(), conv3x3(half, half), nn.GELU(), conv1x1(half, channels)
        )
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x) + x)


def relative_position_index(window: int) -> Tensor:
    """(w*w, w*w) index into the bias table for each pair of positions in a window: the pair's
    row and column offsets, each shifted to 0..2w-2, as one number in base 2w-1."""
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    d_row = rows[:, None] - rows[None, :] + window - 1
    d_col = cols[:, None] - cols[None, :] + window - 1
    return d_row * (2 * window - 1) + d_col


def to_windows(x: Tensor, window: int) -> Tensor:
    """(B, H, W, C) -> (B * windows, window * window, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def from_windows(windows: Tensor, window: int, b: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`to_windows`."""
    x = windows.reshape(b, h // window, w // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, -1)


def shift_mask(h: int, w: int, window: int, shift: int, device: torch.device) -> Tensor:
    """(windows, N, N) additive mask after a cyclic shift by ``shift``: positions that came from
    different regions of the unshifted map (3 bands per axis) must not attend to each other."""

    def bands(n: int) -> Tensor:
        idx = torch.arange(n, device=device)
        return (idx >= n - window).long() + (idx >= n - shift).long()

    labels = (bands(h)[:, None] * 3 + bands(w)[None, :]).reshape(1, h, w, 1).float()
    lab = to_windows(labels, window).squeeze(-1)  # (windows, N)
    differs = lab[:, None, :] != lab[:, :, None]
    return torch.zeros(differs.shape, device=device).masked_fill(differs, _MASKED)


class WindowSelfAttention(nn.Module):
    """Multi-head self-attention over the tokens of each window, with a relative position bias."""

    relative_position_index: Tensor

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """``tokens`` (B * windows, N, C); ``mask`` (windows, N, N) or None."""
        bw, n, c = tokens.shape
        q, k, v = self.qkv(tokens).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        logits = (q * self.scale) @ k.transpose(-2, -1)  # (B*windows, heads, N, N)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        logits = logits + bias.reshape(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            logits = logits.reshape(bw // windows, windows, self.heads, n, n) + mask[None, :, None]
            logits = logits.reshape(bw, self.heads, n, n)
        out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


class ShiftedWindowBlock(nn.Module):
    """``x + attention(x)`` over (shifted) windows of a (B, C, H, W) map."""

    def __init__(self, dim: int, heads: int, window: int, shift: int):
        super().__init__()
        if not 0 <= shift < window:
            raise ValueError(f"the shift must be in [0, {window}), got {shift}")
        self.window, self.shift = window, shift
        self.attn = WindowSelfAttention(dim, heads, window)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        if h % self.window or w % self.window:
            raise ValueError(f"a {h}x{w} feature map does not split into {self.window}x{self.window} windows")
        t = x.permute(0, 2, 3, 1)
        mask = None
        if self.shift:
            t = torch.roll(t, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shift_mask(h, w, self.window, self.shift, x.device)
        out = from_windows(self.attn(to_windows(t, self.window), mask), self.window, b, h, w)
        if self.shift:
            out = torch.roll(out, shifts=(self.shift, self.shift), dims=(1, 2))
        return x + out.permute(0, 3, 1, 2)


class WindowAttentionModule(nn.Module):
    """WACNN's WAM: ``x + trunk(x) * sigmoid(gate(x))`` (see the module notes).

    ``out_channels`` lets the adapter machinery (``codec.adaptation.synthesis``) read the width of
    its output as it reads a convolution's."""

    def __init__(self, dim: int, heads: int = 8, window: int = 8, shift: int = 4):
        super().__init__()
        self.out_channels = dim
        self.conv_a = nn.Sequential(ResidualUnit(dim), ResidualUnit(dim), ResidualUnit(dim))
        self.conv_b = nn.Sequential(
            ShiftedWindowBlock(dim, heads, window, shift),
            ResidualUnit(dim),
            ResidualUnit(dim),
            ResidualUnit(dim),
            conv1x1(dim, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_a(x) * torch.sigmoid(self.conv_b(x)) + x
