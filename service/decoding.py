"""Decoding in the API process: the checks that come before any byte reaches the entropy decoder
(container, size, model availability), then a decode with the process's model registry
(:mod:`service.core.model_registry`, shared with the rest of the process)."""

from __future__ import annotations

import time

from codec.bitstream import BitstreamError
from codec.coder import decode_image, read_header
from codec.zoo import ModelError
from service.core.config import get_settings
from service.core.errors import ProblemError
from service.core.model_registry import registry


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
