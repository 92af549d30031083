"""Checks on uploaded images, shared by the routes that take them (encode jobs, domain samples).

Here rather than in one of the route modules so that no route module imports another.
"""

from __future__ import annotations

from codec.imageio import CodecImage, ImageInputError, load_image
from service.core.errors import ProblemError


def load_upload(data: bytes, max_pixels: int) -> CodecImage:
    """The uploaded image, decoded; 422 problems for an empty, unreadable or too large upload."""
    if not data:
        raise ProblemError(422, "invalid-image", "Empty upload", "the uploaded file has no bytes")
    try:
        return load_image(data, max_pixels=max_pixels)
    except ImageInputError as exc:
        title = "Image too large" if exc.kind == "image-too-large" else "Not a usable image"
        raise ProblemError(422, exc.kind, title, str(exc)) from None


def validate_image(data: bytes, max_pixels: int) -> tuple[int, int]:
    """The image's (width, height); 422 problems for an empty, unreadable or too large upload."""
    img = load_upload(data, max_pixels)
    return img.width, img.height
