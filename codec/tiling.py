"""Tiled analysis and synthesis: coding memory set by the tile size, not by the image size.

The two full-resolution transforms dominate the memory of a coding job: at 48 Mpixel the
synthesis's half-resolution feature maps alone are several GB. Both transforms are convolutions
(5x5, stride 2) with point-wise GDN and 1x1 adapters in between, so an output position depends on
a bounded neighbourhood of its input (about 30 pixels for a latent of the analysis, about 2
latents for a pixel of the synthesis). Each transform therefore runs tile by tile on a window
that adds a *halo* of ``halo`` latents on every side of the tile; only the tile's centre is kept.
With a halo at least that reach, every kept value is computed from exactly the inputs the whole
image gives it: tiled and whole coding agree up to float rounding of the convolutions (measured
in ``tests/test_tiling.py`` and docs/guide/tiling.md).

What is *not* tiled: the latents y and z and their entropy coding. They are 1/256 of the pixels
(128 channels of y at 1/16 resolution: ~2 bytes of float per image pixel), so at the 50 Mpixel
limit they take a few hundred MB, and keeping them whole keeps the Y and Z sections exactly the
format of a single-tile file: the hyperprior sees the whole image (no RD loss at tile borders)
and a decoder that ignores the layout still decodes a tiled file.

The layout is in the header (``Field.TILING``, ancillary): tile and halo in latent units. It
defines the canonical reconstruction of the file (the bit-exact decode that the encoder
verified); a decoder that does not know the field decodes the same latents whole, which differs
from it by float rounding at most. Which images are tiled is the caller's choice
(:class:`TilingPolicy`, through :func:`tiling_policy` or explicitly); small images keep the
single-tile format byte for byte.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import ctypes
import math
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from codec.bitstream import BitstreamError, Container, Field
from codec.imageio import PAD_MULTIPLE, padded_size

#: image pixels per latent position along each side (four stride-2 layers)
LATENT_STRIDE = 16
#: default tile: 32 latents = 512 pixels a side. Smaller tiles were faster here as well as leaner
#: (12 Mpixel synthesis, 2 tiles at once: 1024 px +539 MB 10.9 s, 768 px +200 MB 10.6 s, 512 px
#: +65 MB 7.7 s): the feature maps of a tile stay in cache
DEFAULT_TILE = 32
#: default halo: 2 latents = 32 pixels, what the transforms reach (analysis: 30 pixels through four
#: 5x5 stride-2 layers; synthesis: under 2 latents), so every kept value sees all its inputs
DEFAULT_HALO = 2
#: padded pixel count above which a plain encode is tiled (and a decode may tile): 4 Mpixel
DEFAULT_THRESHOLD_PIXELS = 4_194_304
_MAX_TILE = 4096
_MAX_HALO = 64


@dataclass(frozen=True)
class TileLayout:
    """A tiling of the latent grid: square ``tile`` latents a side, ``halo`` latents added around."""

    tile: int = DEFAULT_TILE
    halo: int = DEFAULT_HALO

    def __post_init__(self) -> None:
        if not (PAD_MULTIPLE // LATENT_STRIDE <= self.tile <= _MAX_TILE) or not (0 <= self.halo <= _MAX_HALO):
            raise ValueError(f"tile layout out of range (tile {self.tile}, halo {self.halo} latents)")

    def to_bytes(self) -> bytes:
        return struct.pack("<HB", self.tile, self.halo)

    @classmethod
    def from_container(cls, c: Container) -> TileLayout | None:
        """The layout a file was coded with, None for a single-tile file; a bad field is corrupt."""
        raw = c.fields.get(Field.TILING)
        if raw is None:
            return None
        if len(raw) != 3:
            raise BitstreamError("bitstream is corrupt (bad TILING field)")
        tile, halo = struct.unpack("<HB", raw)
        try:
            return cls(tile, halo)
        except ValueError:
            raise BitstreamError("bitstream is corrupt (TILING field out of range)") from None

    def count(self, width: int, height: int) -> int:
        """How many tiles an image of this size has."""
        pw, ph = padded_size(width, height)
        return len(spans(ph // LATENT_STRIDE, self.tile)) * len(spans(pw // LATENT_STRIDE, self.tile))


@dataclass(frozen=True)
class TilingPolicy:
    """Which images are coded in tiles: those whose padded area exceeds ``threshold_pixels``."""

    threshold_pixels: int = DEFAULT_THRESHOLD_PIXELS
    layout: TileLayout = TileLayout()

    @classmethod
    def from_pixels(cls, threshold_pixels: int, tile_px: int = DEFAULT_TILE * LATENT_STRIDE) -> TilingPolicy:
        """A policy from user-facing figures (a tile side in pixels, a multiple of 64)."""
        if threshold_pixels < 0:
            raise ValueError(f"the tiling threshold must be 0 or more pixels, not {threshold_pixels}")
        if tile_px % PAD_MULTIPLE or not (PAD_MULTIPLE <= tile_px <= _MAX_TILE * LATENT_STRIDE):
            raise ValueError(
                f"the tile size must be a multiple of {PAD_MULTIPLE} from {PAD_MULTIPLE} to "
                f"{_MAX_TILE * LATENT_STRIDE} pixels, not {tile_px}"
            )
        return cls(threshold_pixels, TileLayout(tile_px // LATENT_STRIDE))

    def layout_for(self, width: int, height: int) -> TileLayout | None:
        pw, ph = padded_size(width, height)
        return self.layout if pw * ph > self.threshold_pixels else None


_POLICY: contextvars.ContextVar[TilingPolicy | None] = contextvars.ContextVar("udic_tiling", default=None)


def current_policy() -> TilingPolicy:
    """The policy in force (the default unless a caller set one with :func:`tiling_policy`)."""
    return _POLICY.get() or TilingPolicy()


@contextmanager
def tiling_policy(policy: TilingPolicy) -> Iterator[None]:
    """Code with ``policy`` inside the block (the CLI and the worker set the configured one).

    A context variable, so that the encode entry points between the caller and the coder need no
    new parameter, and concurrent requests in threads do not see each other's policy."""
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)


def spans(n: int, tile: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges covering ``0..n`` in steps of ``tile``."""
    return [(s, min(n, s + tile)) for s in range(0, n, tile)]


Reader = Callable[[int, int, int, int], Tensor]
Writer = Callable[[int, int, int, int, Tensor], None]


def run_tiled(
    fn: Callable[[Tensor], Tensor],
    grid: tuple[int, int],
    layout: TileLayout,
    read: Reader,
    write: Writer,
    workers: int = 1,
) -> None:
    """Run ``fn`` on every tile of a latent grid (rows, cols) with its halo, keeping the centres.

    ``read(a0, a1, b0, b1)`` gives the input for latent rows ``a0:a1`` and columns ``b0:b1`` (the
    window, halo included, clipped to the grid: at the image border the transform's own zero
    padding applies, as for the whole image); ``fn``'s output has a fixed number of output units
    per latent; ``write(r0, r1, c0, c1, out)`` receives the tile's centre in those units.

    ``workers`` tiles run at once, each in its own thread. Under :func:`canonical_compute` each
    tile's convolutions then run on one thread, as canonical coding requires, and the tiles use
    the cores instead: the pixels are those of a one-thread run (tests/test_tiling.py)."""
    rows, cols = grid
    h = layout.halo
    boxes = [(r, c) for r in spans(rows, layout.tile) for c in spans(cols, layout.tile)]

    def one(box: tuple[tuple[int, int], tuple[int, int]]) -> None:
        (r0, r1), (c0, c1) = box
        a0, a1, b0, b1 = max(0, r0 - h), min(rows, r1 + h), max(0, c0 - h), min(cols, c1 + h)
        with torch.inference_mode():  # thread-local: set in each worker
            out = fn(read(a0, a1, b0, b1))
            s = out.shape[-2] // (a1 - a0)
            write(r0, r1, c0, c1, out[..., (r0 - a0) * s : (r1 - a0) * s, (c0 - b0) * s : (c1 - b0) * s])

    if workers <= 1 or len(boxes) == 1:
        for box in boxes:
            one(box)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="udic-tile") as pool:
        for _ in pool.map(one, boxes):  # in order; re-raises a tile's exception here
            pass


def channels_last(transform: nn.Module) -> Callable[[Tensor], Tensor]:
    """``transform`` on channels-last tensors: about 1.7x faster on CPU here, and the same floats
    (measured bit-identical on one thread, tests/test_tiling.py). A copy: the model is shared."""
    fast = copy.deepcopy(transform).to(memory_format=torch.channels_last)
    return lambda x: fast(x.contiguous(memory_format=torch.channels_last))


def pixel_window(rgb: np.ndarray, a0: int, a1: int, b0: int, b1: int) -> Tensor:
    """Latent rows a0:a1, cols b0:b1 of the image as the coder sees it: float in [0, 1], padded
    bottom/right by replication to the coded size (the same values ``codec.coder.pad_image`` gives,
    without ever making a float copy of the whole image)."""
    h, w = rgb.shape[:2]
    rows = np.minimum(np.arange(a0 * LATENT_STRIDE, a1 * LATENT_STRIDE), h - 1)
    cols = np.minimum(np.arange(b0 * LATENT_STRIDE, b1 * LATENT_STRIDE), w - 1)
    patch = rgb[rows[:, None], cols[None, :]]
    return torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def analysis_tiled(
    g_a: Callable[[Tensor], Tensor], rgb: np.ndarray, layout: TileLayout, channels: int, workers: int = 1
) -> Tensor:
    """The analysis transform's y for a whole (H, W, 3) uint8 image, computed tile by tile."""
    pw, ph = padded_size(rgb.shape[1], rgb.shape[0])
    grid = (ph // LATENT_STRIDE, pw // LATENT_STRIDE)
    y = torch.empty(1, channels, *grid)

    def write(r0: int, r1: int, c0: int, c1: int, out: Tensor) -> None:
        y[..., r0:r1, c0:c1] = out

    run_tiled(g_a, grid, layout, lambda a0, a1, b0, b1: pixel_window(rgb, a0, a1, b0, b1), write, workers)
    return y


def to_uint8_into(out: np.ndarray, x: Tensor, r0: int, c0: int) -> None:
    """Write float pixels ``x`` (1, 3, h, w) at (r0, c0) of the uint8 image ``out``, cropped to it;
    the same rounding as ``codec.decoding.to_uint8``."""
    h = max(0, min(x.shape[-2], out.shape[0] - r0))
    w = max(0, min(x.shape[-1], out.shape[1] - c0))
    if h and w:
        px = x[0, :, :h, :w].clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0)
        out[r0 : r0 + h, c0 : c0 + w] = px.numpy()


def synthesis_tiled(
    g_s: Callable[[Tensor], Tensor],
    y: Tensor,
    layout: TileLayout,
    size: tuple[int, int],
    device: torch.device,
    workers: int = 1,
) -> np.ndarray:
    """The (H, W, 3) uint8 image for synthesis input ``y`` (1, M, rows, cols), tile by tile.

    Each tile's window moves to ``device`` and its centre comes back as 8-bit pixels, so neither a
    float image nor a full-resolution feature map is ever held."""
    width, height = size
    out = np.empty((height, width, 3), dtype=np.uint8)

    def write(r0: int, r1: int, c0: int, c1: int, px: Tensor) -> None:
        to_uint8_into(out, px.cpu(), r0 * LATENT_STRIDE, c0 * LATENT_STRIDE)

    def read(a0: int, a1: int, b0: int, b1: int) -> Tensor:
        return y[..., a0:a1, b0:b1].to(device)

    run_tiled(g_s, (y.shape[-2], y.shape[-1]), layout, read, write, workers)
    return out


def squared_error(a: np.ndarray, b: np.ndarray, rows: int = 256) -> int:
    """Sum of squared differences of two uint8 images, exact, in row blocks (no float64 copies)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    total = 0
    for r in range(0, a.shape[0], rows):
        d = a[r : r + rows].astype(np.int64) - b[r : r + rows].astype(np.int64)
        total += int((d * d).sum())
    return total


def exact_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 images from :func:`squared_error` (``inf`` when identical)."""
    sse = squared_error(a, b)
    return math.inf if sse == 0 else 10.0 * math.log10(255.0**2 * a.size / sse)


def release_heap() -> None:
    """Give freed heap back to the OS between the stages of a tiled job (glibc only; else nothing).

    The tiles run in worker threads, and glibc keeps what each thread freed in that thread's arena:
    measured at 48 Mpixel, 365 MB stayed resident after the tiled analysis, on top of which the
    entropy coding and the verification decode then built their own peaks."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


#: y latents per z position along each side (the hyper-analysis has two stride-2 layers)
Z_STRIDE = 4
#: hyper-latents added around a window for the hyper-synthesis (it reaches under 2 z positions)
Z_HALO = 2

Box = tuple[int, int, int, int]  # rows r0:r1, cols c0:c1


@dataclass(frozen=True)
class LatentWindow:
    """One tile of the latent grid as the tiled adaptive encode (``codec.adaptation.tiled``) sees it.

    ``tile``: the y latents the tile owns (its rate counts here, its pixels are its distortion);
    ``synth``: those plus the halo, the synthesis input; ``hyper``: the z positions whose
    hyper-synthesis covers ``synth`` with ``Z_HALO`` to spare. All in their own units (y latents,
    z positions); the ``*_in_*`` methods give one region relative to another as slices."""

    tile: Box
    synth: Box
    hyper: Box

    @property
    def hyper_y(self) -> Box:
        """The y latents the ``hyper`` z positions predict (the hyper-synthesis's output)."""
        return (self.hyper[0] * Z_STRIDE, self.hyper[1] * Z_STRIDE, self.hyper[2] * Z_STRIDE, self.hyper[3] * Z_STRIDE)

    @staticmethod
    def rel(inner: Box, outer: Box, scale: int = 1) -> tuple[slice, slice]:
        """``inner`` as slices of a tensor covering ``outer`` (``scale`` output units per unit)."""
        return (
            slice((inner[0] - outer[0]) * scale, (inner[1] - outer[0]) * scale),
            slice((inner[2] - outer[2]) * scale, (inner[3] - outer[2]) * scale),
        )

    def tile_z(self) -> Box:
        """The z positions the tile owns (tiles are whole multiples of ``Z_STRIDE`` latents)."""
        r0, r1, c0, c1 = self.tile
        return (r0 // Z_STRIDE, r1 // Z_STRIDE, c0 // Z_STRIDE, c1 // Z_STRIDE)


def latent_windows(rows: int, cols: int, layout: TileLayout) -> list[LatentWindow]:
    """The windows of a (rows, cols) latent grid, row by row; rows and cols are multiples of 4
    (the padded image is a multiple of 64 pixels), and so are the tile's corners."""
    h, zr, zc = layout.halo, rows // Z_STRIDE, cols // Z_STRIDE
    out = []
    for r0, r1 in spans(rows, layout.tile):
        for c0, c1 in spans(cols, layout.tile):
            a0, a1, b0, b1 = max(0, r0 - h), min(rows, r1 + h), max(0, c0 - h), min(cols, c1 + h)
            hyper = (
                max(0, a0 // Z_STRIDE - Z_HALO),
                min(zr, -(-a1 // Z_STRIDE) + Z_HALO),
                max(0, b0 // Z_STRIDE - Z_HALO),
                min(zc, -(-b1 // Z_STRIDE) + Z_HALO),
            )
            out.append(LatentWindow((r0, r1, c0, c1), (a0, a1, b0, b1), hyper))
    return out
