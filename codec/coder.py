"""Plain (non-adaptive) encode and decode of whole images into ``.udic`` bitstreams.

This is the codec's bottom layer: turning a request's names (model, quality or lambda, domain) into
the model to code with happens once, in :func:`resolve_encode_model`; :func:`encode_resolved` codes
with a model already resolved. The content-adaptive encode (``codec.adaptation.encoder``) and the one
encode entry point for callers (``codec.pipeline.encode``) build on these two.

``encode`` always verifies: it decodes its own bytes through the public decode path and checks
that the pixels equal the encoder's own reconstruction, so a stored bitstream is known to decode.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from codec import __version__
from codec.adaptation.decoding import adapted_decompress
from codec.bitstream import BitstreamError, Container, Field, Section
from codec.determinism import canonical_compute
from codec.domains.auto import choose_domain
from codec.imageio import DEFAULT_MAX_PIXELS, CodecImage, load_image
from codec.metrics import psnr
from codec.progress import ProgressCallback, ProgressEvent, no_progress
from codec.zoo.base import BaseModel
from codec.zoo.errors import UnknownModelError
from codec.zoo.hashing import symbols_hash
from codec.zoo.registry import Registry, default_registry

PAD_MULTIPLE = 64
MAX_CODED_SIDE = 1 << 16

ImageInput = str | Path | bytes | Image.Image | CodecImage


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


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float -> (H, W, 3) uint8, rounding half away from zero after clamping."""
    return x.clamp(0, 1).mul(255.0).round().to(torch.uint8)[0].permute(1, 2, 0).contiguous().numpy()


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


def _alpha_from_payload(payload: bytes, width: int, height: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(payload)) as im:
            if im.format != "PNG" or im.mode != "L" or im.size != (width, height):
                raise BitstreamError("bitstream is corrupt (alpha section does not match the image)")
            return np.asarray(im, dtype=np.uint8).copy()
    except (OSError, SyntaxError, zlib.error) as exc:
        raise BitstreamError(f"bitstream is corrupt (alpha section: {exc})") from None


def _level_bytes(model: BaseModel, level: float) -> bytes:
    return struct.pack("<f", level) if model.variable_rate else struct.pack("<B", int(level) + 1)


def _parse_level(container: Container) -> tuple[float, int | None]:
    """(level, zoo quality or None) from the LEVEL field: 4 bytes float level, 1 byte quality."""
    raw = container.require(Field.LEVEL)
    if len(raw) == 4:
        level = struct.unpack("<f", raw)[0]
        if not np.isfinite(level):
            raise BitstreamError("bitstream is corrupt (rate level is not a number)")
        return level, None
    if len(raw) == 1:
        return float(raw[0] - 1), raw[0]
    raise BitstreamError("bitstream is corrupt (bad LEVEL field)")


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
    """Plain encode with a resolved model (see :func:`resolve_encode_model`), verified by decoding."""
    t0 = time.monotonic()
    progress(ProgressEvent("analysis", 0, 3, time.monotonic() - t0))
    x = to_tensor(img.rgb)
    progress(ProgressEvent("entropy-coding", 1, 3, time.monotonic() - t0))
    with canonical_compute():
        out = base.compress(pad_image(x), level)
    progress(ProgressEvent("verification", 2, 3, time.monotonic() - t0))
    extra: dict[int, bytes] | None = None
    if out["symbols"] is not None:
        extra = {Field.SYMBOLS_HASH: symbols_hash(out["symbols"])}
    result = _finish(base, img, level, out["strings"], expected=None, registry=registry, extra_fields=extra)
    progress(ProgressEvent("done", 3, 3, time.monotonic() - t0, result.bpp, result.psnr))
    return result


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
    expected: np.ndarray | None,
    registry: Registry,
    extra_fields: dict[int, bytes] | None = None,
    extra_sections: dict[int, bytes] | None = None,
) -> EncodeResult:
    data = build_container(base, img, level, strings, extra_fields, extra_sections)
    try:
        decoded = decode_image(data, registry=registry)
    except BitstreamError as exc:  # our own output must decode: this is a bug, not user error
        raise EncodeError(f"the encoder's own bitstream failed to decode: {exc}") from exc
    if expected is not None and not np.array_equal(decoded.rgb, expected):
        raise EncodeError("the encoder's own bitstream decoded to different pixels (non-deterministic entropy model)")
    ref = img.rgb if not img.grayscale else np.asarray(img.to_pil().convert("L"))
    got = decoded.rgb if not img.grayscale else np.asarray(decoded.to_pil().convert("L"))
    return EncodeResult(
        data=data,
        model=base.name,
        level=level,
        width=img.width,
        height=img.height,
        decoded=decoded,
        bpp=len(data) * 8.0 / (img.width * img.height),
        psnr=psnr(ref, got),
        domain=base.domain[0] if base.domain is not None else None,
    )


def encode(
    image: ImageInput,
    model: str = "default",
    quality: float | None = None,
    lmbda: float | None = None,
    **kwargs: object,
) -> bytes:
    """Encode an image; returns the bytes of a verified ``.udic`` bitstream."""
    return encode_report(image, model, quality, lmbda, **kwargs).data  # type: ignore[arg-type]


def read_header(data: bytes) -> dict[str, object]:
    """Header fields of a bitstream, parsed and checked, without decoding any pixel."""
    c = Container.from_bytes(data)
    w, h = c.image_size()
    level, zoo_q = _parse_level(c)
    info: dict[str, object] = {
        "format_version": c.version,
        "model": c.get_str(Field.MODEL_ID),
        "model_hash": c.require(Field.MODEL_HASH).hex(),
        "width": w,
        "height": h,
        "quality": (zoo_q if zoo_q is not None else round(level + 1.0, 4)),
        "grayscale": c.fields.get(Field.COLOR, b"\x00") == b"\x01",
        "alpha": Section.ALPHA in c.sections,
        "domain": c.get_str(Field.DOMAIN_ID) if Field.DOMAIN_ID in c.fields else None,
        "bytes": len(data),
        "bpp": len(data) * 8.0 / (w * h),
        "sections": {
            Section(t).name if t in Section._value2member_map_ else f"0x{t:02x}": len(v) for t, v in c.sections.items()
        },
    }
    return info


def resolve_model(c: Container, registry: Registry) -> tuple[BaseModel, float]:
    """The base model a container names, checked against its weights hash."""
    name = c.get_str(Field.MODEL_ID)
    level, zoo_q = _parse_level(c)
    try:
        # a file made with a retired default gets its kept version; other weights are refused
        name, base = registry.for_bitstream(name, c.require(Field.MODEL_HASH), zoo_q)
    except UnknownModelError:
        raise UnknownModelError(f"bitstream needs model {name!r}, which this decoder does not have") from None
    lo, hi = base.quality_range
    if not (lo - 1 <= level <= hi - 1):
        raise BitstreamError("bitstream is corrupt (rate level out of range)")
    if Field.DOMAIN_ID in c.fields:
        domain_hash = c.require(Field.DOMAIN_HASH)
        base = registry.domain_model(name, c.get_str(Field.DOMAIN_ID), domain_hash, with_encoder=False)
    return base, level


def decode_image(data: bytes, registry: Registry | None = None) -> CodecImage:
    """Decode a bitstream into a :class:`CodecImage` (RGB + optional alpha, gray flag)."""
    reg = registry or default_registry()
    c = Container.from_bytes(data)
    w, h = c.image_size()
    if w > MAX_CODED_SIDE or h > MAX_CODED_SIDE or w * h > DEFAULT_MAX_PIXELS * 4:
        raise BitstreamError(f"bitstream is corrupt (implausible image size {w}x{h})")
    base, level = resolve_model(c, reg)
    hp, wp = h + (-h) % PAD_MULTIPLE, w + (-w) % PAD_MULTIPLE
    shape = (hp // PAD_MULTIPLE, wp // PAD_MULTIPLE)
    strings = [[c.section(Section.Y)], [c.section(Section.Z)]]
    adapted = Section.ADAPTERS in c.sections or Section.OMP in c.sections
    symbols: list[torch.Tensor] | None
    with canonical_compute():
        try:
            if adapted:
                x_hat, symbols = adapted_decompress(base, c, strings, shape, level)
            else:
                x_hat, symbols = base.decompress(strings, shape, level)
        except (RuntimeError, ValueError, IndexError) as exc:
            if isinstance(exc, BitstreamError):
                raise
            raise BitstreamError(f"bitstream is corrupt (entropy decoding failed: {exc})") from None
    expected_hash = c.fields.get(Field.SYMBOLS_HASH)
    if expected_hash is not None and symbols is not None and symbols_hash(symbols) != expected_hash:
        raise BitstreamError(
            "bitstream does not decode to what was encoded "
            "(payload altered, or the entropy model differs on this platform)"
        )
    rgb = to_uint8(x_hat[..., :h, :w])
    alpha = _alpha_from_payload(c.sections[Section.ALPHA], w, h) if Section.ALPHA in c.sections else None
    gray = c.fields.get(Field.COLOR, b"\x00") == b"\x01"
    return CodecImage(rgb=rgb, alpha=alpha, grayscale=gray)


def decode(data: bytes, registry: Registry | None = None) -> Image.Image:
    """Decode a bitstream into a PIL image (L, LA, RGB or RGBA as the source was)."""
    return decode_image(data, registry).to_pil()


__all__ = ["EncodeResult", "__version__", "decode", "decode_image", "encode", "encode_report", "read_header"]
