"""Bjontegaard delta rate and delta PSNR with piecewise cubic (PCHIP) interpolation.

The usual definition (VCEG-M33, with the monotone piecewise-cubic interpolation that replaced
the cubic polynomial fit in JVET's tools): interpolate log-rate as a function of PSNR (for BD-rate)
or PSNR as a function of log-rate (for BD-PSNR) on each curve, integrate both over the range where
the curves overlap, and compare the averages. Curves that do not overlap give
:class:`NoOverlapError` rather than an extrapolated number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.interpolate import PchipInterpolator


class NoOverlapError(ValueError):
    """The two RD curves share no range of the integration variable."""


def _prepare(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.size < 2:
        raise ValueError("each curve needs at least two (rate, quality) points")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError("RD points must be finite (drop lossless/infinite-PSNR points)")
    order = np.argsort(xa)
    xa, ya = xa[order], ya[order]
    # merge duplicate abscissae (PCHIP needs strictly increasing x)
    ux, idx = np.unique(xa, return_index=True)
    if ux.size < 2:
        raise ValueError("each curve needs at least two distinct points")
    uy = np.array([ya[xa == v].mean() for v in ux])
    del idx
    return ux, uy


def _avg_diff(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray) -> float:
    lo, hi = max(x1.min(), x2.min()), min(x1.max(), x2.max())
    if not hi > lo:
        raise NoOverlapError("no overlap")
    f1, f2 = PchipInterpolator(x1, y1), PchipInterpolator(x2, y2)
    i1 = f1.integrate(lo, hi)
    i2 = f2.integrate(lo, hi)
    return float((i2 - i1) / (hi - lo))


def bd_rate(
    rate_anchor: Sequence[float], psnr_anchor: Sequence[float], rate_test: Sequence[float], psnr_test: Sequence[float]
) -> float:
    """Average bitrate difference of ``test`` against ``anchor`` in percent (negative = saving)."""
    if min(*rate_anchor, *rate_test) <= 0:
        raise ValueError("rates must be positive")
    # integrate log-rate over PSNR
    pa, la = _prepare(psnr_anchor, np.log(np.asarray(rate_anchor, dtype=np.float64)))
    pt, lt = _prepare(psnr_test, np.log(np.asarray(rate_test, dtype=np.float64)))
    try:
        d = _avg_diff(pa, la, pt, lt)
    except NoOverlapError:
        raise NoOverlapError("no overlap: the curves share no PSNR range") from None
    return (math.exp(d) - 1.0) * 100.0


def bd_psnr(
    rate_anchor: Sequence[float], psnr_anchor: Sequence[float], rate_test: Sequence[float], psnr_test: Sequence[float]
) -> float:
    """Average PSNR difference of ``test`` against ``anchor`` in dB (positive = better)."""
    if min(*rate_anchor, *rate_test) <= 0:
        raise ValueError("rates must be positive")
    la, pa = _prepare(np.log(np.asarray(rate_anchor, dtype=np.float64)), psnr_anchor)
    lt, pt = _prepare(np.log(np.asarray(rate_test, dtype=np.float64)), psnr_test)
    try:
        return _avg_diff(la, pa, lt, pt)
    except NoOverlapError:
        raise NoOverlapError("no overlap: the curves share no rate range") from None


def format_bd(fn: Callable[..., float], *args: Sequence[float]) -> str:
    """``'-12.3%'``-style text, ``'no overlap'``, or ``'n/a'`` for a degenerate curve (fewer than two
    distinct points, e.g. an untrained model whose files are all header): a table cell, not a crash."""
    try:
        return f"{fn(*args):+.1f}"
    except NoOverlapError:
        return "no overlap"
    except ValueError:
        return "n/a"
