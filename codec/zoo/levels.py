"""Quality and lambda to the coding *level*: the number a bitstream's LEVEL field holds.

Gained (variable-rate) models code at any float32 level: quality ``q`` in ``[lo, hi]`` is level
``q - 1``, and a lambda maps through the model's own gain interpolation. Zoo models have one network
per whole quality, so their level is that quality minus one and a lambda is refused. The level is
rounded to float32 here, once, so that encoder and decoder use the exact value the header stores.
"""

from __future__ import annotations

import struct

from codec.zoo.errors import InvalidQualityError


def as_float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as the bitstream stores it."""
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


def check_lambda(name: str, lmbda: float, variable_rate: bool, quality_range: tuple[float, float]) -> None:
    """Refuse a lambda a model cannot code at (non-positive, or a fixed-rate model)."""
    lo, hi = quality_range
    if not lmbda > 0:
        raise InvalidQualityError(f"lambda must be positive, got {lmbda}")
    if not variable_rate:
        raise InvalidQualityError(f"model {name} has fixed rates; give a quality {lo:g}-{hi:g}")


def quality_level(name: str, quality: float | None, quality_range: tuple[float, float], whole: bool) -> float:
    """The level for a 1-based quality (the middle of the range when none is given)."""
    lo, hi = quality_range
    q = (lo + hi) / 2 if quality is None else float(quality)
    if not (lo <= q <= hi):
        raise InvalidQualityError(f"quality must be between {lo:g} and {hi:g} for model {name}, got {q:g}")
    if whole and q != int(q):
        raise InvalidQualityError(f"model {name} takes whole qualities {lo:g}-{hi:g}, got {q:g}")
    return q - 1.0


def zoo_quality(name: str, quality: float | None, lmbda: float | None, quality_range: tuple[int, int]) -> int:
    """The network a zoo model codes with: a whole quality (the middle one when none is given).

    Checked before loading, since each quality is a separate download.
    """
    lo, hi = quality_range
    if lmbda is not None:
        raise InvalidQualityError(f"model {name} has fixed rates; give a quality {lo}-{hi}")
    q = (lo + hi) // 2 if quality is None else quality
    if float(q) != int(q):
        raise InvalidQualityError(f"model {name} takes whole qualities {lo}-{hi}, got {q:g}")
    return int(q)
