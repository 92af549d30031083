"""Decoding in the API process: a process-wide LRU of loaded models, and the checks that come
before any byte reaches the entropy decoder (container, size, model availability)."""

from __future__ import annotations

import threading
import time

from codec.bitstream import BitstreamError
from codec.coder import decode_image, read_header
from codec.zoo import ModelError, Registry
from service.core.config import get_settings
from service.core.errors import ProblemError

_registry: Registry | None = None
_lock = threading.Lock()


def registry() -> Registry:
    global _registry
    with _lock:
        if _registry is None:
            settings = get_settings()
            _registry = Registry(capacity=settings.decode_cache_models, domains_dir=settings.domains_path)
        return _registry


def decode_to_png(data: bytes) -> tuple[bytes, float]:
    """PNG bytes and decode seconds; raises ProblemError (4xx) for anything the client sent wrong."""
    settings = get_settings()
    if not data:
        raise ProblemError(422, "empty-bitstream", "Empty bitstream", "the request had no bytes to decode")
    try:
        header = read_header(data)
    except BitstreamError as exc:
        raise ProblemError(422, exc.kind, "Invalid bitstream", str(exc)) from None
    if int(header["width"]) * int(header["height"]) > settings.max_pixels:  # type: ignore[call-overload]
        raise ProblemError(
            422,
            "image-too-large",
            "Image too large",
            f"the bitstream decodes to {header['width']}x{header['height']} pixels, "
            f"more than this server's limit of {settings.max_pixels}",
        )
    t = time.perf_counter()
    try:
        img = decode_image(data, registry=registry())
    except BitstreamError as exc:
        raise ProblemError(422, exc.kind, "Invalid bitstream", str(exc)) from None
    except ModelError as exc:
        raise ProblemError(422, exc.kind, "Model not available", str(exc)) from None
    seconds = time.perf_counter() - t
    return img.to_png(), seconds
