"""Conventional codecs at the byte size of our file: the page's honest comparison.

For each codec the quality is found by bisection: the highest integer quality whose file is no
larger than the target. The encoders, their exact settings and the PSNR/MS-SSIM definitions are
the ones ``udic eval`` uses (:mod:`codec.evaluation.conventional`, :mod:`codec.metrics`), so a
row here equals ``udic eval``'s row for the same image and setting (tests/test_same_size.py
holds them equal).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from codec.evaluation.conventional import CODECS, run_point
from codec.metrics import ms_ssim, psnr

#: the codecs the page compares with, and the quality range each is searched over
SAME_SIZE_CODECS: dict[str, tuple[int, int]] = {"jpeg420": (1, 100), "webp": (0, 100), "avif444": (0, 100)}
LABELS = {"jpeg420": "JPEG", "webp": "WebP", "avif444": "AVIF"}


@dataclass(frozen=True)
class SameSizeResult:
    codec: str
    label: str
    setting: int
    settings_text: str
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float  # NaN for images under 161 px on a side (as in udic eval)
    fits: bool  # False when even the lowest quality is larger than the target
    search_s: float
    encodes: int
    decoded: np.ndarray


def _search(name: str, rgb: np.ndarray, target_bytes: int) -> tuple[int, bytes, np.ndarray, int, bool]:
    """(quality, file, decoded, encodes tried, fits): the highest quality whose file fits the target."""
    codec = CODECS[name]
    tried: dict[int, tuple[bytes, np.ndarray]] = {}

    def at(q: int) -> tuple[bytes, np.ndarray]:
        if q not in tried:
            tried[q] = run_point(codec, rgb, q)
        return tried[q]

    lo, hi = SAME_SIZE_CODECS[name]
    if len(at(lo)[0]) > target_bytes:
        return lo, *at(lo), len(tried), False
    if len(at(hi)[0]) <= target_bytes:
        return hi, *at(hi), len(tried), True
    # invariant: size(lo) <= target < size(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if len(at(mid)[0]) <= target_bytes:
            lo = mid
        else:
            hi = mid
    return lo, *at(lo), len(tried), True


def code_at_size(name: str, rgb: np.ndarray, target_bytes: int) -> SameSizeResult:
    """One codec's file at (at most) ``target_bytes``, decoded, with its PSNR and MS-SSIM."""
    if name not in SAME_SIZE_CODECS:
        raise ValueError(f"unknown codec {name!r}; available: {', '.join(SAME_SIZE_CODECS)}")
    t = time.perf_counter()
    q, data, dec, n, fits = _search(name, rgb, target_bytes)
    h, w = rgb.shape[:2]
    return SameSizeResult(
        codec=name,
        label=LABELS[name],
        setting=q,
        settings_text=CODECS[name].describe(q),
        bytes=len(data),
        bpp=len(data) * 8 / (w * h),
        psnr=psnr(rgb, dec),
        ms_ssim=ms_ssim(rgb, dec),
        fits=fits,
        search_s=time.perf_counter() - t,
        encodes=n,
        decoded=dec,
    )


def finite(x: float) -> float | None:
    """JSON has no NaN or infinity: None for those."""
    return x if math.isfinite(x) else None
