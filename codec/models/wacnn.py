"""WACNN (Zou, Song, Zhang, "The Devil Is in the Details: Window-based Attention for Image
Compression", CVPR 2022), written from the paper: the base model of seeds 001 and 002.

* Analysis / synthesis: four stride-2 5x5 convolutions with GDN, and a window attention module
  (:mod:`codec.models.window_attention`) at 1/4 resolution (window 8) and on the latent (window 4).
  M = 320 latent channels, N = 192 elsewhere and in the hyper-latent z.
* Hyperprior: z = h_a(y) under a factorised prior; two hyper-syntheses predict a mean map and a
  scale map for y (``h_mean_s``, ``h_scale_s``).
* Channel-wise conditional entropy model (Minnen & Singh 2020), 10 slices of 32 channels as in the
  authors' release: slice i's Gaussian mean and scale come from the hyper maps and the already
  decoded slices (at most 5: ``cc_mean_transforms[i]`` / ``cc_scale_transforms[i]``), and a
  *latent residual prediction* (``lrp_transforms[i]``, ``0.5 * tanh``) corrects the rounded
  slice before it serves as context and as the synthesis input.

Parameter names and shapes are those of the authors' published checkpoints (their ``WACNN``), so
a published file loads strictly (:func:`load_published`: a ``state_dict`` wrapper, ``module.``
prefixes and CompressAI's older entropy-bottleneck names are accepted).

Coding (:meth:`WACNN.compress_latents` / :meth:`WACNN.decompress_latents`) follows the paper: z
with the factorised prior, then the slices in order, each rounded around its predicted mean and
coded with its predicted scale, all in one rANS string. The integer symbols are returned for the
bitstream's symbol hash. The coding runs under ``codec.determinism.canonical_compute`` (the
encoder and decoder must derive identical scales).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN, conv3x3, subpel_conv3x3
from compressai.models.base import CompressionModel
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from codec.models.window_attention import WindowAttentionModule

N_CHANNELS, M_CHANNELS = 192, 320
SLICES = 10
MAX_SUPPORT = 5
SLICE_CHANNELS = M_CHANNELS // SLICES
#: y symbols decoded per rANS call (bounds the Python lists, as ``codec.decoding.DECODE_CHUNK``)
DECODE_CHUNK = 1 << 20

Rounder = Callable[[Tensor], Tensor]


def _slice_net(in_channels: int) -> nn.Sequential:
    """The 5-layer 3x3 network of one slice's mean, scale or residual prediction (-> 32 channels)."""
    widths = (in_channels, 224, 176, 128, 64, SLICE_CHANNELS)
    layers: list[nn.Module] = []
    for i in range(5):
        layers.append(conv(widths[i], widths[i + 1], stride=1, kernel_size=3))
        if i < 4:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


def _hyper_synthesis() -> nn.Sequential:
    """z (192 channels, 1/64) -> a 320-channel map at the latent's resolution (1/16)."""
    return nn.Sequential(
        conv3x3(192, 192),
        nn.GELU(),
        subpel_conv3x3(192, 224, 2),
        nn.GELU(),
        conv3x3(224, 256),
        nn.GELU(),
        subpel_conv3x3(256, 288, 2),
        nn.GELU(),
        conv3x3(288, 320),
    )


@dataclass
class SliceCoding:
    """y through the channel-wise context: rounded residuals ``rounder(y - mean)``, the quantised y
    (``residual + mean``), the Gaussian means and scales, and the LRP-corrected y that ``g_s`` reads."""

    residual: Tensor
    y_hat: Tensor
    means: Tensor
    scales: Tensor
    y_syn: Tensor


class WACNN(CompressionModel):
    """The published WACNN architecture (N=192, M=320, 10 slices, 5 support slices)."""

    def __init__(self) -> None:
        super().__init__()
        n, m = N_CHANNELS, M_CHANNELS
        self.N, self.M = n, m
        self.g_a = nn.Sequential(
            conv(3, n),
            GDN(n),
            conv(n, n),
            GDN(n),
            WindowAttentionModule(n, 8, window=8, shift=4),
            conv(n, n),
            GDN(n),
            conv(n, m),
            WindowAttentionModule(m, 8, window=4, shift=2),
        )
        self.g_s = nn.Sequential(
            WindowAttentionModule(m, 8, window=4, shift=2),
            deconv(m, n),
            GDN(n, inverse=True),
            deconv(n, n),
            GDN(n, inverse=True),
            WindowAttentionModule(n, 8, window=8, shift=4),
            deconv(n, n),
            GDN(n, inverse=True),
            deconv(n, 3),
        )
        self.h_a = nn.Sequential(
            conv3x3(320, 320),
            nn.GELU(),
            conv3x3(320, 288),
            nn.GELU(),
            conv3x3(288, 256, stride=2),
            nn.GELU(),
            conv3x3(256, 224),
            nn.GELU(),
            conv3x3(224, 192, stride=2),
        )
        self.h_mean_s = _hyper_synthesis()
        self.h_scale_s = _hyper_synthesis()
        support = [m + SLICE_CHANNELS * min(i, MAX_SUPPORT) for i in range(SLICES)]
        self.cc_mean_transforms = nn.ModuleList(_slice_net(c) for c in support)
        self.cc_scale_transforms = nn.ModuleList(_slice_net(c) for c in support)
        self.lrp_transforms = nn.ModuleList(
            _slice_net(m + SLICE_CHANNELS * min(i + 1, MAX_SUPPORT + 1)) for i in range(SLICES)
        )
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.gaussian_conditional = GaussianConditional(None)

    # --- the channel-wise context ------------------------------------------------------
    def hyper_maps(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """(mean map, scale map) that every slice's prediction starts from."""
        return self.h_mean_s(z_hat), self.h_scale_s(z_hat)

    def slice_params(self, i: int, maps: tuple[Tensor, Tensor], done: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """(mean, scale, mean support) of slice ``i`` given the corrected slices before it."""
        support = done[:MAX_SUPPORT]
        mean_support = torch.cat([maps[0], *support], dim=1)
        mean = self.cc_mean_transforms[i](mean_support)
        scale = self.cc_scale_transforms[i](torch.cat([maps[1], *support], dim=1))
        return mean, scale, mean_support

    def corrected(self, i: int, mean_support: Tensor, y_hat: Tensor) -> Tensor:
        """Slice ``i`` after latent residual prediction (what later slices and ``g_s`` read)."""
        lrp = self.lrp_transforms[i](torch.cat([mean_support, y_hat], dim=1))
        return y_hat + 0.5 * torch.tanh(lrp)

    def channel_context(self, y: Tensor, maps: tuple[Tensor, Tensor], rounder: Rounder) -> SliceCoding:
        """All slices in order, each rounded by ``rounder`` around its predicted mean: ``torch.round``
        for what the file codes, a relaxed rounding (SGA) for optimisation; ``maps`` from
        :meth:`hyper_maps`. One forward pass, as in training: the rates of every slice come out
        at once, with no entropy coding in between."""
        done: list[Tensor] = []
        res, hats, means, scales = [], [], [], []
        for i, y_i in enumerate(y.chunk(SLICES, 1)):
            mean, scale, mean_support = self.slice_params(i, maps, done)
            r = rounder(y_i - mean)
            y_hat = r + mean
            done.append(self.corrected(i, mean_support, y_hat))
            res.append(r)
            hats.append(y_hat)
            means.append(mean)
            scales.append(scale)
        cat = lambda ts: torch.cat(ts, dim=1)  # noqa: E731
        return SliceCoding(cat(res), cat(hats), cat(means), cat(scales), cat(done))

    # --- coding -----------------------------------------------------------------------
    def z_symbols(self, z_hat: Tensor) -> Tensor:
        return torch.round(z_hat - self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)).to(torch.int32)

    def compress_latents(self, y: Tensor, z: Tensor) -> dict[str, Any]:
        """Strings ``[[y], [z]]``, the z shape and the integer symbols ``[y, z]`` of given latents."""
        if not (torch.isfinite(y).all() and torch.isfinite(z).all()):
            raise FloatingPointError("the latents to code are not finite (NaN or inf)")  # rANS would hang
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        z_strings = eb.compress(z)
        z_hat = eb.decompress(z_strings, z.size()[-2:])
        coded = self.channel_context(y, self.hyper_maps(z_hat), torch.round)
        y_sym = coded.residual.to(torch.int32)
        indexes = gc.build_indexes(coded.scales)
        tables = (
            gc.quantized_cdf.tolist(),
            gc.cdf_length.reshape(-1).int().tolist(),
            gc.offset.reshape(-1).int().tolist(),
        )
        encoder = BufferedRansEncoder()  # one string, slice by slice: Python lists of one slice at a time
        for sym, idx in zip(y_sym.chunk(SLICES, 1), indexes.chunk(SLICES, 1), strict=True):
            encoder.encode_with_indexes(sym.reshape(-1).tolist(), idx.reshape(-1).tolist(), *tables)
        y_string = encoder.flush()
        return {
            "strings": [[y_string], z_strings],
            "shape": tuple(z.size()[-2:]),
            "symbols": [y_sym, self.z_symbols(z_hat)],
        }

    def compress(self, x: Tensor) -> dict[str, Any]:
        y = self.g_a(x)
        return self.compress_latents(y, self.h_a(y))

    def decompress_latents(self, strings: list[list[bytes]], shape: tuple[int, int]) -> tuple[Tensor, list[Tensor]]:
        """(the synthesis input, decoded integer symbols [y, z]); slice by slice from one rANS string."""
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        z_hat = eb.decompress(strings[1][:1], shape)
        maps = self.hyper_maps(z_hat)
        cdf = gc.quantized_cdf.tolist()
        lengths = gc.cdf_length.reshape(-1).int().tolist()
        offsets = gc.offset.reshape(-1).int().tolist()
        decoder = RansDecoder()
        decoder.set_stream(strings[0][0])
        done: list[Tensor] = []
        symbols = []
        for i in range(SLICES):
            mean, scale, mean_support = self.slice_params(i, maps, done)
            flat = gc.build_indexes(scale).reshape(-1)
            sym = torch.empty(flat.numel(), dtype=torch.int32)
            for start in range(0, flat.numel(), DECODE_CHUNK):
                part = flat[start : start + DECODE_CHUNK].tolist()
                sym[start : start + len(part)] = torch.tensor(decoder.decode_stream(part, cdf, lengths, offsets))
            sym = sym.reshape(mean.shape)
            done.append(self.corrected(i, mean_support, sym.to(mean.dtype) + mean))
            symbols.append(sym)
        return torch.cat(done, dim=1), [torch.cat(symbols, dim=1), self.z_symbols(z_hat)]

    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int]) -> dict[str, Any]:
        y, symbols = self.decompress_latents(strings, shape)
        return {"x_hat": self.g_s(y).clamp_(0, 1), "symbols": symbols}


def is_wacnn(net: nn.Module) -> TypeGuard[WACNN]:
    return isinstance(net, WACNN)


def published_state_dict(checkpoint: object) -> dict[str, Tensor]:
    """The state dict inside a checkpoint as the authors' training writes it: a ``state_dict``
    entry (next to optimiser state) or the bare dict, keys possibly prefixed ``module.``
    (DataParallel). Raises ValueError for anything else."""
    sd = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, Tensor) for v in sd.values()):
        raise ValueError("not a state dict (expected a dict of tensors, or one under 'state_dict')")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in sd.items()}


def load_published(checkpoint: object) -> WACNN:
    """A WACNN with the checkpoint's weights, loaded strictly (RuntimeError lists any mismatch)."""
    net = WACNN()
    net.load_state_dict(published_state_dict(checkpoint), strict=True)
    return net
