"""Regions of interest: a per-pixel weight map for the distortion term of the adaptive encode (seed 003).

The latent refinement and the adapters minimise ``bits + lambda * 255^2 * MSE``; with a region of
interest the MSE becomes ``mean(w * (x_hat - x)^2)``, so bits move to where the weights are high.
The map is normalised to mean 1, which keeps lambda's meaning (the overall rate stays near the
unweighted one) and makes only the *relative* weights matter. The decoder needs nothing: the
bitstream is an ordinary one, the weights only steer what the encoder writes.

Three ways to say where (:class:`RoiSpec`):

- ``mask``: a PNG the size of the image; its grey value is the weight (black 0 .. white 1). Any
  colour type is read as its luma.
- ``rects``: rectangles ``{"x", "y", "w", "h", "weight"}`` over a background of weight 1 (where
  rectangles overlap the larger weight wins); at most :data:`MAX_RECTS`, weights 0-100.
- ``auto``: :func:`auto_weights`, from the image itself: weight 1 + 3 x the local density of strong
  edges (luma steps > 24 of 255 within a 15 px window, saturating at a quarter of the window). Text,
  line art, UI widgets and fine texture are dense in such steps; they are also where coding
  artefacts cost the most (ringing around strokes makes text unreadable), while smooth areas
  (sky, gradients, flat UI backgrounds) get weight 1.

The API stores a mask as a block map (:data:`ROI_BLOCK` pixels a cell, 8-bit weights), so a job's
options stay a few kilobytes whatever the upload; the CLI uses the mask at full resolution.
Every refusal is a :class:`RoiError` (``kind`` ``invalid-roi``): a 4xx for the API, one line and
exit 2 for the CLI.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from codec.imageio import CodecImage, ImageInputError, load_image, padded_size

ROI_BLOCK = 8
MAX_RECTS = 64
MAX_WEIGHT = 100.0
MAX_MASK_BYTES = 16 * 1024 * 1024
EDGE_STEP = 24.0  # luma step (of 255) that counts as an edge
EDGE_WINDOW = 15  # px, side of the density window
EDGE_SATURATION = 0.25  # density at which the weight is full
AUTO_GAIN = 3.0  # auto weights run from 1 to 1 + AUTO_GAIN
RoiKind = Literal["auto", "rects", "mask", "grid"]


class RoiError(ImageInputError):
    """A region of interest that cannot be used (wrong size or type, bad weights)."""

    kind = "invalid-roi"


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int
    weight: float

    @classmethod
    def parse(cls, item: Any) -> Rect:
        if not isinstance(item, dict) or set(item) - {"x", "y", "w", "h", "weight"}:
            raise RoiError('each rectangle is an object {"x", "y", "w", "h", "weight"}')
        try:
            x, y, w, h = (int(item[k]) for k in ("x", "y", "w", "h"))
            weight = float(item.get("weight", 4.0))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise RoiError("rectangle fields x, y, w, h must be integers and weight a number") from None
        if not (math.isfinite(weight) and 0.0 <= weight <= MAX_WEIGHT):
            raise RoiError(f"rectangle weights must be between 0 and {MAX_WEIGHT:g}, got {weight}")
        if x < 0 or y < 0 or w <= 0 or h <= 0:
            raise RoiError("rectangles need x, y >= 0 and w, h > 0")
        return cls(x, y, w, h, weight)


def parse_rects(text: str | list[Any]) -> tuple[Rect, ...]:
    """Rectangles from JSON text (or the list itself); refused when malformed or too many."""
    try:
        items = json.loads(text) if isinstance(text, str) else text
    except (ValueError, RecursionError):
        raise RoiError("roi_rects must be a JSON list of rectangles") from None
    if not isinstance(items, list) or not items:
        raise RoiError("roi_rects must be a non-empty JSON list of rectangles")
    if len(items) > MAX_RECTS:
        raise RoiError(f"at most {MAX_RECTS} rectangles")
    return tuple(Rect.parse(item) for item in items)


def normalised(weights: np.ndarray) -> np.ndarray:
    """The map scaled to mean 1 (float32); refused when not finite, negative or all zero."""
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise RoiError("region weights must be finite and not negative")
    mean = float(w.mean()) if w.size else 0.0
    if mean <= 0:
        raise RoiError("a region of interest needs some weight somewhere (the map is all zero)")
    return (w / mean).astype(np.float32)


def weights_from_mask(png: bytes, width: int, height: int) -> np.ndarray:
    """Grey values of a PNG mask as weights in [0, 1] (not normalised); the size must be the image's."""
    if len(png) > MAX_MASK_BYTES:
        raise RoiError(f"the mask is larger than {MAX_MASK_BYTES // (1024 * 1024)} MiB")
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise RoiError("the mask must be a PNG image")
    try:
        pw, ph = padded_size(width, height)  # the limit counts padded pixels, as for the image itself
        mask = load_image(png, max_pixels=pw * ph)
    except ImageInputError as exc:
        raise RoiError(f"the mask is not a usable PNG: {exc}") from None
    if (mask.width, mask.height) != (width, height):
        raise RoiError(f"the mask is {mask.width}x{mask.height}, the image {width}x{height}: they must match")
    rgb = mask.rgb.astype(np.float32)
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0


def check_rects(rects: tuple[Rect, ...], width: int, height: int) -> None:
    """Refuse rectangles none of which touches the image (a region that is nowhere is a mistake)."""
    if not any(r.x < width and r.y < height for r in rects):
        raise RoiError(f"no rectangle lies inside the {width}x{height} image")


def weights_from_rects(rects: tuple[Rect, ...], width: int, height: int) -> np.ndarray:
    """Background weight 1, each rectangle (clipped to the image) its own weight; overlaps take the max."""
    check_rects(rects, width, height)
    w = np.ones((height, width), dtype=np.float32)
    covered = np.zeros((height, width), dtype=bool)
    for r in rects:
        sl = (slice(r.y, r.y + r.h), slice(r.x, r.x + r.w))
        w[sl] = np.where(covered[sl], np.maximum(w[sl], r.weight), r.weight)
        covered[sl] = True
    return w


def _box_mean(a: np.ndarray, size: int) -> np.ndarray:
    """Mean over a ``size`` x ``size`` window (clipped at the borders), by an integral image: O(pixels)."""
    h, w = a.shape
    ii = np.zeros((h + 1, w + 1), dtype=np.float64)
    ii[1:, 1:] = a.cumsum(0).cumsum(1)
    r = size // 2
    y0, y1 = np.clip(np.arange(h) - r, 0, h), np.clip(np.arange(h) + r + 1, 0, h)
    x0, x1 = np.clip(np.arange(w) - r, 0, w), np.clip(np.arange(w) + r + 1, 0, w)
    total = ii[y1][:, x1] - ii[y0][:, x1] - ii[y1][:, x0] + ii[y0][:, x0]
    area = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    return total / area


def auto_weights(rgb: np.ndarray) -> np.ndarray:
    """1 + 3 x the local density of strong luma steps (see the module notes)."""
    luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    step = np.zeros_like(luma)
    step[:, 1:] = np.abs(np.diff(luma, axis=1))
    step[1:, :] = np.maximum(step[1:, :], np.abs(np.diff(luma, axis=0)))
    density = _box_mean((step > EDGE_STEP).astype(np.float32), EDGE_WINDOW)
    return (1.0 + AUTO_GAIN * np.clip(density / EDGE_SATURATION, 0.0, 1.0)).astype(np.float32)


def pack_grid(weights: np.ndarray) -> tuple[bytes, int, int]:
    """A weight map as 8-bit block means (ROI_BLOCK px a cell, relative to the maximum), zlib-compressed."""
    h, w = weights.shape
    gh, gw = -(-h // ROI_BLOCK), -(-w // ROI_BLOCK)
    padded = np.pad(weights, ((0, gh * ROI_BLOCK - h), (0, gw * ROI_BLOCK - w)), mode="edge")
    cells = padded.reshape(gh, ROI_BLOCK, gw, ROI_BLOCK).mean(axis=(1, 3))
    top = float(cells.max())
    q = np.round(cells / top * 255.0) if top > 0 else np.zeros_like(cells)
    return zlib.compress(q.astype(np.uint8).tobytes(), 9), gw, gh


def unpack_grid(data: bytes, gw: int, gh: int, width: int, height: int) -> np.ndarray:
    if -(-width // ROI_BLOCK) != gw or -(-height // ROI_BLOCK) != gh:
        raise RoiError("the stored region map does not fit this image")
    try:
        raw = zlib.decompressobj().decompress(data, gw * gh + 1)
    except zlib.error:
        raise RoiError("the stored region map is corrupt") from None
    if len(raw) != gw * gh:
        raise RoiError("the stored region map is corrupt")
    cells = np.frombuffer(raw, dtype=np.uint8).reshape(gh, gw).astype(np.float32)
    return np.repeat(np.repeat(cells, ROI_BLOCK, 0), ROI_BLOCK, 1)[:height, :width]


@dataclass(frozen=True)
class RoiSpec:
    """Where the encode should spend its bits: resolved against the image by :meth:`weights`."""

    kind: RoiKind
    rects: tuple[Rect, ...] = ()
    data: bytes = b""  # the mask PNG ("mask") or the packed block map ("grid")
    grid: tuple[int, int] = (0, 0)  # (columns, rows) of a block map

    @classmethod
    def from_mask_as_grid(cls, png: bytes, width: int, height: int) -> RoiSpec:
        """A mask checked against the image size and stored compactly (what the API queues)."""
        weights = weights_from_mask(png, width, height)
        normalised(weights)  # refuse an all-black mask now, not in the worker
        data, gw, gh = pack_grid(weights)
        return cls("grid", data=data, grid=(gw, gh))

    def weights(self, img: CodecImage) -> np.ndarray:
        """The normalised (mean 1) weight map for ``img``, (H, W) float32."""
        w, h = img.width, img.height
        if self.kind == "auto":
            raw = auto_weights(img.rgb)
        elif self.kind == "rects":
            raw = weights_from_rects(self.rects, w, h)
        elif self.kind == "mask":
            raw = weights_from_mask(self.data, w, h)
        else:
            raw = unpack_grid(self.data, *self.grid, w, h)
        return normalised(raw)

    def to_json(self) -> str:
        """The spec as text for a job payload (a mask travels as its block map)."""
        if self.kind == "auto":
            return "auto"
        if self.kind == "rects":
            return json.dumps({"rects": [r.__dict__ for r in self.rects]})
        if self.kind == "mask":
            raise ValueError("convert a mask with from_mask_as_grid before queuing it")
        return json.dumps({"grid": base64.b64encode(self.data).decode(), "cols": self.grid[0], "rows": self.grid[1]})

    @classmethod
    def from_json(cls, text: str) -> RoiSpec:
        if text == "auto":
            return cls("auto")
        try:
            doc = json.loads(text)
            if "rects" in doc:
                return cls("rects", rects=parse_rects(doc["rects"]))
            return cls("grid", data=base64.b64decode(doc["grid"]), grid=(int(doc["cols"]), int(doc["rows"])))
        except (ValueError, KeyError, TypeError):
            raise RoiError("the stored region of interest is corrupt") from None
