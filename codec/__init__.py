"""udic: universal deep image compression, the codec (no web code here).

Public API::

    from codec import encode, decode, read_header
    data = encode("photo.png", model="default", quality=3)
    image = decode(data)            # PIL image
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

__all__ = ["__version__", "decode", "decode_image", "encode", "encode_report", "read_header"]

if TYPE_CHECKING:  # pragma: no cover
    from codec.coder import decode, decode_image, encode, encode_report, read_header


def __getattr__(name: str) -> Any:
    """Lazy re-exports: ``import codec`` stays cheap (no torch) until coding is used."""
    if name in {"encode", "decode", "decode_image", "encode_report", "read_header"}:
        from codec import coder

        return getattr(coder, name)
    raise AttributeError(name)
