"""Plain (non-adaptive) encode and decode of whole images into ``.udic`` bitstreams.

This is the codec's bottom layer: turning a request's names (model, quality or lambda, domain) into
the model to code with happens once, in :func:`resolve_encode_model`; :func:`encode_resolved` codes
with a model already resolved. The content-adaptive encode (``codec.adaptation.encoder``) and the one
encode entry point for callers (``codec.pipeline.encode``) build on these two.

``encode`` always verifies: it decodes its own bytes through the public decode path, and the
decoder must recover exactly the integer symbols the encoder coded (the symbol hash the encoder
writes into the file, checked before the synthesis; every model that reports its symbols: the
embedded variable-rate models and the plain hyperpriors -- autoregressive zoo models are only
checked to decode). Equal symbols give equal pixels on the canonical path, so a pixel comparison
with the encoder's own reconstruction would add nothing but a second synthesis (36 % of a plain
encode's time, measured on Kodak 23 at quality 3). That decode is bit-exact (canonical synthesis),
so the reported PSNR is the one every decoder can reproduce. Decoding itself lives in
:mod:`codec.decoding` (re-exported here).
"""

from __future__ import annotations

import io
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from codec import __version__
from codec.bitstream import BitstreamError, Container, Field, Section
from codec.decoding import MAX_CODED_SIDE, decode, decode_image, read_header, resolve_model, to_uint8
from codec.determinism import canonical_compute
from codec.domains.auto import choose_domain
from codec.entropy_chunks import compress_gained_grouped
from codec.imageio import DEFAULT_MAX_PIXELS, PAD_MULTIPLE, CodecImage, load_image, padded_size
from codec.metrics import psnr
from codec.models.gained import GainedMeanScaleHyperprior
from codec.progress import ProgressCallback, ProgressEvent, no_progress
from codec.tiling import TileLayout, analysis_tiled, current_policy, exact_psnr, release_heap
from codec.zoo.base import BaseModel
from codec.zoo.hashing import symbols_hash
from codec.zoo.registry import Registry, default_registry

ImageInput = str | Path | bytes | Image.Image | CodecImage
#: above this many samples, PSNR is summed in integer row blocks (float64 copies of a 48 Mpixel
#: image would take 2.3 GB); below it, the one definition in ``codec.metrics``
_EXACT_PSNR_ABOVE = 16_000_000


class EncodeError(RuntimeError):
    """The encoder could not produce a verified bitstream (a bug or a numerics problem)."""

    kind = "encode-failed"


@dataclass
class EncodeResult:
    """Bytes plus what the verification decode told us about them."""

    data: bytes
    model: str
    level: float
    width: int
    height: int
    decoded: CodecImage
    bpp: float
    psnr: float
    domain: str | None = None  # the domain adapter coded with (after "auto" chose), None for the base model


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def pad_image(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Replicate-pad the bottom/right edge to a multiple (cheaper to code than zeros)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    # replicate needs the pad to be smaller than the input for reflect; replicate is fine for any
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def _alpha_payload(alpha: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(alpha).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _level_bytes(model: BaseModel, level: float) -> bytes:
    return struct.pack("<f", level) if model.variable_rate else struct.pack("<B", int(level) + 1)


def load_input(image: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS) -> CodecImage:
    """The image as the codec codes it; a :class:`CodecImage` is taken as it is (already checked)."""
    return image if isinstance(image, CodecImage) else load_image(image, max_pixels=max_pixels)


def resolve_encode_model(
    registry: Registry,
    img: CodecImage,
    model: str,
    quality: float | None = None,
    lmbda: float | None = None,
    domain: str | None = None,
) -> tuple[BaseModel, float]:
    """The model to code ``img`` with, domain adapter baked in, and the exact level.

    The one place where a domain is resolved, so plain and adaptive encodes agree: ``domain`` names
    a stored adapter (codec.domains), or is ``"auto"`` to let the cheapest of the stored adapters
    (or none) be chosen for this image, or None for the base model."""
    base, level = registry.resolve(model, quality, lmbda)
    # by the requested name: ``default@<hash>`` is named ``default`` once loaded
    if domain == "auto":
        domain, _ = choose_domain(registry, model, img, level)
    if domain is not None:
        base = registry.domain_model(model, domain)
    return base, level


def encode_resolved(
    base: BaseModel, img: CodecImage, level: float, registry: Registry, progress: ProgressCallback = no_progress
) -> EncodeResult:
    """Plain encode with a resolved model (see :func:`resolve_encode_model`), verified by decoding.

    Images above the tiling policy's threshold (``codec.tiling``) run the analysis in tiles and
    say so in the header, so that their verification decode runs in the same tiles."""
    t0 = time.monotonic()
    progress(ProgressEvent("analysis", 0, 3, time.monotonic() - t0))
    layout = current_policy().layout_for(img.width, img.height) if tileable(base) else None
    workers = torch.get_num_threads()  # tiles run in parallel, each on canonical compute's one thread
    progress(ProgressEvent("entropy-coding", 1, 3, time.monotonic() - t0))
    with canonical_compute():
        out = (
            base.compress(pad_image(to_tensor(img.rgb)), level)
            if layout is None
            else _compress_tiled(base, img, level, layout, workers)
        )
    progress(ProgressEvent("verification", 2, 3, time.monotonic() - t0))
    extra: dict[int, bytes] = {}
    if out["symbols"] is not None:
        extra[Field.SYMBOLS_HASH] = symbols_hash(out["symbols"])
        out["symbols"] = None  # hashed: free them before the verification decode
    if layout is not None:
        extra[Field.TILING] = layout.to_bytes()
        release_heap()
    result = _finish(base, img, level, out["strings"], registry=registry, extra_fields=extra or None)
    progress(ProgressEvent("done", 3, 3, time.monotonic() - t0, result.bpp, result.psnr))
    return result


def tileable(base: BaseModel) -> bool:
    """Whether the model codes in tiles: the gained hyperprior (its transforms' reach is known)."""
    return isinstance(base.net, GainedMeanScaleHyperprior)


def _compress_tiled(base: BaseModel, img: CodecImage, level: float, layout: TileLayout, workers: int) -> dict[str, Any]:
    """``base.compress`` with the analysis run in tiles, without a float copy of the whole image or
    its feature maps. The latents came out bit-identical to the whole analysis wherever measured
    (tests/test_tiling.py; the 12 Mpixel bench file), so the Y and Z sections were the same; where
    a size made the convolutions round differently, the file would differ a little from the whole
    encode but still decode exactly, since no decoder recomputes the analysis."""
    net = base.net
    assert isinstance(net, GainedMeanScaleHyperprior)
    y = analysis_tiled(net.g_a, img.rgb, layout, net.M, workers)  # contiguous: channels-last changes its floats
    release_heap()
    z = net.h_a(y)
    q = base.level_tensor(level)
    gain, _ = net.gains(q)
    y.mul_(gain)  # in place: compress_latents' ``y * gain`` without a second copy
    return compress_gained_grouped(net, y, z, q)


def encode_report(
    image: ImageInput,
    model: str = "default",
    quality: float | None = None,
    lmbda: float | None = None,
    *,
    registry: Registry | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: ProgressCallback = no_progress,
    domain: str | None = None,
) -> EncodeResult:
    """Encode an image with a base model (no per-image adaptation) and verify the result decodes.

    ``domain``: a stored domain adapter id, ``"auto"`` or None (see :func:`resolve_encode_model`).
    For adaptation, time budgets and the metrics a service reports, use ``codec.pipeline.encode``."""
    reg = registry or default_registry()
    img = load_input(image, max_pixels)
    base, level = resolve_encode_model(reg, img, model, quality, lmbda, domain)
    return encode_resolved(base, img, level, reg, progress)


def build_container(
    base: BaseModel,
    img: CodecImage,
    level: float,
    strings: list[list[bytes]],
    extra_fields: dict[int, bytes] | None = None,
    extra_sections: dict[int, bytes] | None = None,
) -> bytes:
    c = Container()
    c.set_str(Field.MODEL_ID, base.name)
    c.fields[Field.MODEL_HASH] = base.hash
    c.set_image_size(img.width, img.height)
    c.fields[Field.LEVEL] = _level_bytes(base, level)
    if img.grayscale:
        c.fields[Field.COLOR] = b"\x01"
    c.sections[Section.Y] = strings[0][0]
    c.sections[Section.Z] = strings[1][0]
    if img.alpha is not None:
        c.sections[Section.ALPHA] = _alpha_payload(img.alpha)
    if base.domain is not None:
        c.set_str(Field.DOMAIN_ID, base.domain[0])
        c.fields[Field.DOMAIN_HASH] = base.domain[1]
    c.fields.update(extra_fields or {})
    c.sections.update(extra_sections or {})
    return c.to_bytes()


def _finish(
    base: BaseModel,
    img: CodecImage,
    level: float,
    strings: list[list[bytes]],
    registry: Registry,
    extra_fields: dict[int, bytes] | None = None,
    extra_sections: dict[int, bytes] | None = None,
) -> EncodeResult:
    """The container, verified: decoded by the public path, whose symbol-hash check (in
    ``extra_fields``) fails unless the decoder recovers the symbols the encoder coded."""
    data = build_container(base, img, level, strings, extra_fields, extra_sections)
    try:
        # bit-exact: the canonical pixels every decoder can reproduce, so metrics are reproducible;
        # the limit is the padded size the caller already admitted this image at
        pw, ph = padded_size(img.width, img.height)
        decoded = decode_image(data, registry=registry, max_pixels=pw * ph, bit_exact=True)
    except BitstreamError as exc:  # our own output must decode: this is a bug, not user error
        raise EncodeError(f"the encoder's own bitstream failed to decode: {exc}") from exc
    ref = img.rgb if not img.grayscale else np.asarray(img.to_pil().convert("L"))
    got = decoded.rgb if not img.grayscale else np.asarray(decoded.to_pil().convert("L"))
    quality = psnr(ref, got) if ref.size <= _EXACT_PSNR_ABOVE else exact_psnr(ref, got)
    return EncodeResult(
        data=data,
        model=base.name,
        level=level,
        width=img.width,
        height=img.height,
        decoded=decoded,
        bpp=len(data) * 8.0 / (img.width * img.height),
        psnr=quality,
        domain=base.domain[0] if base.domain is not None else None,
    )


def encode(
    image: ImageInput,
    model: str = "default",
    quality: float | None = None,
    lmbda: float | None = None,
    **kwargs: Any,
) -> bytes:
    """Encode an image; returns the bytes of a verified ``.udic`` bitstream."""
    return encode_report(image, model, quality, lmbda, **kwargs).data


__all__ = [
    "MAX_CODED_SIDE",
    "PAD_MULTIPLE",
    "EncodeResult",
    "__version__",
    "decode",
    "decode_image",
    "encode",
    "encode_report",
    "read_header",
    "resolve_model",
    "to_uint8",
]
