"""Plain (non-adaptive) encode and decode of whole images into ``.udic`` bitstreams.

``encode`` always verifies: it decodes its own bytes through the public decode path and checks
that the pixels equal the encoder's own reconstruction, so a stored bitstream is known to decode.
"""

from __future__ import annotations

import io
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from codec import __version__
from codec.bitstream import BitstreamError, Container, Field, Section
from codec.determinism import canonical_compute
from codec.imageio import DEFAULT_MAX_PIXELS, CodecImage, load_image
from codec.metrics import psnr
from codec.progress import ProgressCallback, ProgressEvent, no_progress
from codec.zoo.registry import (
    BaseModel,
    ModelMismatchError,
    Registry,
    UnknownModelError,
    default_registry,
    symbols_hash,
)

PAD_MULTIPLE = 64
MAX_CODED_SIDE = 1 << 16


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
    import struct

    return struct.pack("<f", level) if model.variable_rate else struct.pack("<B", int(level) + 1)


def _parse_level(container: Container) -> tuple[float, int | None]:
    """(level, zoo quality or None) from the LEVEL field: 4 bytes float level, 1 byte quality."""
    import struct

    raw = container.require(Field.LEVEL)
    if len(raw) == 4:
        level = struct.unpack("<f", raw)[0]
        if not np.isfinite(level):
            raise BitstreamError("bitstream is corrupt (rate level is not a number)")
        return level, None
    if len(raw) == 1:
        return float(raw[0] - 1), raw[0]
    raise BitstreamError("bitstream is corrupt (bad LEVEL field)")


def encode_report(
    image: str | Path | bytes | Image.Image | CodecImage,
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

    ``domain`` names a stored domain adapter (codec.domains) to encode with, or ``"auto"`` to let
    the cheapest of the stored adapters (or none) be chosen for this image."""
    t0 = time.monotonic()
    reg = registry or default_registry()
    img = image if isinstance(image, CodecImage) else load_image(image, max_pixels=max_pixels)
    progress(ProgressEvent("analysis", 0, 3, time.monotonic() - t0))
    base, level = reg.resolve(model, quality, lmbda)
    if domain == "auto":
        from codec.domains.auto import choose_domain

        domain, _ = choose_domain(reg, base.name, img, level)
    if domain is not None:
        base = reg.domain_model(base.name, domain)
    x = to_tensor(img.rgb)
    progress(ProgressEvent("entropy-coding", 1, 3, time.monotonic() - t0))
    with canonical_compute():
        out = base.compress(pad_image(x), level)
    progress(ProgressEvent("verification", 2, 3, time.monotonic() - t0))
    extra = {Field.SYMBOLS_HASH: symbols_hash(out["symbols"])} if out["symbols"] is not None else None
    result = _finish(base, img, level, out["strings"], expected=None, registry=reg, extra_fields=extra)
    progress(ProgressEvent("done", 3, 3, time.monotonic() - t0, result.bpp, result.psnr))
    return result


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
    )


def encode(
    image: str | Path | bytes | Image.Image | CodecImage,
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
        base = registry.get(name, zoo_q)
    except UnknownModelError:
        raise UnknownModelError(f"bitstream needs model {name!r}, which this decoder does not have") from None
    if c.require(Field.MODEL_HASH) != base.hash:
        raise ModelMismatchError(
            f"bitstream was made with different weights for model {name!r} "
            f"(file {c.require(Field.MODEL_HASH).hex()}, here {base.hash.hex()})"
        )
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
    with canonical_compute():
        try:
            if adapted:
                from codec.adaptation.decoding import adapted_decompress

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
