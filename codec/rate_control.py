"""Rate control: encode to a target size (bytes or bits per pixel) or quality (PSNR).

Users ask for "this image in 50 KB" or "at least 38 dB", not for "quality 3". The variable-rate
model codes at any continuous level between its lowest and highest trained rate, and file size and
PSNR both grow with the level, so a target is a root-finding problem in one variable. We solve it on
*real* coded files (plain encodes, ~0.2 s for 256x256 on a CPU), never on the model's estimate:
what is reported is exactly what the file is.

The search (:class:`LevelSearch`) keeps a bracket of probed levels and steps by false position on
log(bytes) (or PSNR), starting from a typical slope; it stops at the first file that respects the
target and lies within its tolerance (size: at most the target and at least 97 % of it; PSNR: at
least the target and at most 0.15 dB above), or after :data:`MAX_PROBES` probes. 3-5 probes are usual.

Unreachable targets are not refused before work (whether 3 KB is reachable depends on the image,
and the API must not encode to find out): the closest file is returned, the lowest- or highest-rate
one, with ``status`` ``"below-range"`` / ``"above-range"`` and ``met`` saying whether the limit
itself holds. Only targets no image could meet (not finite, not positive, PSNR outside 10-100 dB)
are refused, as :class:`InvalidTargetError`.

Adaptation (``codec.adaptation``) changes the size at a given level, by a few percent either way.
:func:`encode_to_target` therefore aims the plain search at the middle of the adaptive window
(95.5-97.5 % of a size target), runs the adaptive encode at that level, and if its file still
misses the window (95-100 %) re-aims once: a new plain search for the target scaled by the size
ratio adaptation produced, and a second adaptive run (with a time budget: 60 % for the first run,
the rest for the second, skipped under 20 %). The final file is the best of all real files that
respect the target, the plain probe included, so an adaptive encode never returns a file over a
reachable byte target: the worst case is the plain file at the level found.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from codec.adaptation.config import AdaptConfig
from codec.adaptation.encoder import AdaptiveResult, encode_with_config
from codec.coder import EncodeResult, encode_resolved
from codec.imageio import CodecImage
from codec.progress import ProgressCallback, ProgressEvent, no_progress
from codec.zoo.base import BaseModel
from codec.zoo.errors import InvalidQualityError
from codec.zoo.levels import as_float32
from codec.zoo.registry import Registry

TargetKind = Literal["bytes", "bpp", "psnr"]
TARGET_KINDS: tuple[TargetKind, ...] = ("bytes", "bpp", "psnr")
MAX_PROBES = 8
SIZE_TOLERANCE = 0.03  # a plain probe is accepted between 97 % and 100 % of a size target
ADAPTIVE_SIZE_TOLERANCE = 0.05  # an adaptive file between 95 % and 100 % needs no re-aim
AIM_TOLERANCE = 0.02  # before adaptation, the plain search aims at 95.5-97.5 %: the window's middle
PSNR_TOLERANCE_DB = 0.15
PSNR_LIMITS = (10.0, 100.0)
MAX_BPP = 64.0  # 8x an uncompressed 24-bit pixel: larger is a mistake, not a target
_SLOPE = {"size": 0.3, "psnr": 1.0}  # typical d log(bytes)/d level and d PSNR/d level of 'default'


class InvalidTargetError(InvalidQualityError):
    """A target no image could meet, or a target given together with a quality or another target."""

    kind = "invalid-target"


@dataclass(frozen=True)
class RateTarget:
    """What to aim at: ``bytes`` (file size), ``bpp`` (file bits per pixel) or ``psnr`` (dB, at least)."""

    kind: TargetKind
    value: float

    def __post_init__(self) -> None:
        v = self.value
        if self.kind not in TARGET_KINDS:
            raise InvalidTargetError(f"unknown target kind {self.kind!r}; kinds: {', '.join(TARGET_KINDS)}")
        if not math.isfinite(v) or v <= 0:
            raise InvalidTargetError(f"target_{self.kind} must be a positive finite number, got {v}")
        if self.kind == "psnr" and not PSNR_LIMITS[0] <= v <= PSNR_LIMITS[1]:
            raise InvalidTargetError(f"target_psnr must be between {PSNR_LIMITS[0]:g} and {PSNR_LIMITS[1]:g} dB")
        if self.kind == "bpp" and v > MAX_BPP:
            raise InvalidTargetError(f"target_bpp must be at most {MAX_BPP:g}")
        if self.kind == "bytes" and v != int(v):
            raise InvalidTargetError(f"target_bytes must be a whole number, got {v}")

    @classmethod
    def from_options(
        cls, target_bytes: float | None = None, target_bpp: float | None = None, target_psnr: float | None = None
    ) -> RateTarget | None:
        """The one target among the options given, None for none; more than one is refused."""
        given = [
            (k, v) for k, v in zip(TARGET_KINDS, (target_bytes, target_bpp, target_psnr), strict=True) if v is not None
        ]
        if len(given) > 1:
            raise InvalidTargetError("give one of target_bytes, target_bpp, target_psnr")
        return cls(given[0][0], float(given[0][1])) if given else None

    def scaled(self, factor: float) -> RateTarget:
        """A size target times ``factor`` (whole bytes for a byte target)."""
        value = self.value * factor
        return replace(self, value=float(max(1, round(value))) if self.kind == "bytes" else value)

    @property
    def is_size(self) -> bool:
        return self.kind != "psnr"

    def measure(self, res: EncodeResult) -> float:
        """The result in the target's unit."""
        return {"bytes": float(len(res.data)), "bpp": res.bpp, "psnr": res.psnr}[self.kind]

    def meets(self, res: EncodeResult) -> bool:
        """Whether the file respects the target: not larger, or not worse."""
        got = self.measure(res)
        return got <= self.value if self.is_size else got >= self.value

    def within(self, res: EncodeResult, size_tolerance: float = SIZE_TOLERANCE) -> bool:
        """Respects the target and is close to it (so no further probe is worth its time)."""
        got = self.measure(res)
        if self.is_size:
            return (1.0 - size_tolerance) * self.value <= got <= self.value
        return self.value <= got <= self.value + PSNR_TOLERANCE_DB

    def coordinate(self, res: EncodeResult) -> float:
        """What the search interpolates: log(bytes) for sizes (near-linear in the level), PSNR (capped
        for a lossless file)."""
        return math.log(len(res.data)) if self.is_size else min(res.psnr, 200.0)

    def goal(self, res: EncodeResult) -> float:
        """The target on :meth:`coordinate`'s scale (``res`` gives the pixel count for bpp)."""
        if self.kind == "bytes":
            return math.log(self.value)
        if self.kind == "bpp":
            return math.log(self.value * res.width * res.height / 8.0)
        return self.value


@dataclass
class TargetReport:
    """What a target encode reached, for the job metrics and the CLI."""

    target: RateTarget
    reached: float  # the final file in the target's unit
    status: str  # "reached", "approximate", "below-range", "above-range"
    met: bool  # the file respects the target (size not over it, PSNR not under it)
    probes: int  # plain encodes run by the search
    adaptive_runs: int
    search_seconds: float  # time spent probing (the extra cost of a target over a quality)
    adaptive_seconds: float  # time in adaptive encodes (more than one run when it re-aimed)
    level: float  # the rate level of the final file

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.target.kind,
            "value": self.target.value,
            "reached": round(self.reached, 4),
            "status": self.status,
            "met": self.met,
            "probes": self.probes,
            "adaptive_runs": self.adaptive_runs,
            "search_seconds": round(self.search_seconds, 3),
            "adaptive_seconds": round(self.adaptive_seconds, 3),
            "level": round(self.level, 5),
        }


@dataclass
class LevelSearch:
    """Plain probes of one image at levels in ``[lo, hi]``, kept so that a re-aim reuses them."""

    base: BaseModel
    img: CodecImage
    registry: Registry
    progress: ProgressCallback = no_progress
    probes: dict[float, EncodeResult] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def bounds(self) -> tuple[float, float]:
        lo, hi = self.base.quality_range
        return lo - 1.0, hi - 1.0

    def key(self, level: float) -> float:
        """The level as probed: inside the bounds, rounded to float32 as the bitstream stores it."""
        return as_float32(min(max(level, self.bounds[0]), self.bounds[1]))

    def probe(self, level: float) -> EncodeResult:
        level = self.key(level)
        if level not in self.probes:
            t = time.monotonic()
            self.probes[level] = encode_resolved(self.base, self.img, level, self.registry)
            self.seconds += time.monotonic() - t
            res = self.probes[level]
            self.progress(ProgressEvent("rate-search", len(self.probes), MAX_PROBES, self.seconds, res.bpp, res.psnr))
        return self.probes[level]

    def find(
        self, target: RateTarget, max_probes: int = MAX_PROBES, tolerance: float = SIZE_TOLERANCE
    ) -> tuple[float, str]:
        """The level of the best plain file for ``target`` and the search's status."""
        lo, hi = self.bounds
        budget = len(self.probes) + max_probes
        level = self._first_guess(target)
        for _ in range(max_probes + 2):  # each pass probes a new level (or returns); a bound for safety
            level = self.key(level)
            res = self.probe(level)
            if target.within(res, tolerance):
                return level, "reached"
            below, above = self._bracket(target)
            if below is None and lo in self.probes:  # even the lowest rate is too much / too good
                return lo, "below-range"
            if above is None and hi in self.probes:
                return hi, "above-range"
            if len(self.probes) >= budget or (below is not None and above is not None and above - below < 1e-4):
                return self._best_level(target), "approximate"
            level = self._next_level(target, below, above)
        return self._best_level(target), "approximate"

    def _first_guess(self, target: RateTarget) -> float:
        lo, hi = self.bounds
        if not self.probes:
            return (lo + hi) / 2.0
        below, above = self._bracket(target)
        return self._next_level(target, below, above)

    def _bracket(self, target: RateTarget) -> tuple[float | None, float | None]:
        """The highest probed level that undershoots the goal's coordinate and the lowest that overshoots."""
        below = [lv for lv, r in self.probes.items() if target.coordinate(r) < target.goal(r)]
        above = [lv for lv, r in self.probes.items() if target.coordinate(r) >= target.goal(r)]
        return (max(below) if below else None), (min(above) if above else None)

    def _next_level(self, target: RateTarget, below: float | None, above: float | None) -> float:
        """False position between the bracket's ends; from one end, a typical slope towards the other
        bound (clamped there, which is how an unreachable target is detected)."""
        lo, hi = self.bounds
        slope = _SLOPE["size" if target.is_size else "psnr"]
        if below is not None and above is not None:
            rb, ra = self.probes[below], self.probes[above]
            cb, ca, g = target.coordinate(rb), target.coordinate(ra), target.goal(rb)
            t = (g - cb) / (ca - cb) if ca > cb else 0.5
            t = min(max(t, 0.1), 0.9)  # keep the bracket shrinking even where the curve bends
            return below + t * (above - below)
        known = below if below is not None else above
        assert known is not None
        r = self.probes[known]
        step = (target.goal(r) - target.coordinate(r)) / slope
        step = math.copysign(max(abs(step), 0.05), step if step != 0 else 1.0)
        return min(max(known + 1.25 * step, lo), hi)

    def _best_level(self, target: RateTarget) -> float:
        return choose_best(target, list(self.probes.values()), self.probes)


def choose_best(target: RateTarget, files: list[EncodeResult], by_level: dict[float, EncodeResult]) -> float:
    """The level whose file is best for ``target`` (see :func:`best_file`)."""
    best = best_file(target, files)
    return next(lv for lv, r in by_level.items() if r is best)


def best_file(
    target: RateTarget,
    files: list[EncodeResult],
    size_tolerance: float = SIZE_TOLERANCE,
    score: Callable[[EncodeResult], float] | None = None,
) -> EncodeResult:
    """The file to return for ``target`` among real files.

    Files within the target's window come first, then files that respect the target; among those,
    the best ``score`` (default PSNR; the ROI-weighted PSNR for a region of interest) for a size
    target and the fewest bytes for a PSNR target. When none respects it, the closest one (fewest
    bytes, or highest PSNR)."""
    ok = [r for r in files if target.within(r, size_tolerance)] or [r for r in files if target.meets(r)]
    if ok:
        return max(ok, key=score or (lambda r: r.psnr)) if target.is_size else min(ok, key=lambda r: len(r.data))
    return min(files, key=lambda r: len(r.data)) if target.is_size else max(files, key=lambda r: r.psnr)


@dataclass
class TargetOutcome:
    adaptive: AdaptiveResult
    report: TargetReport


def _plain_result(res: EncodeResult, img: CodecImage, lmbda: float) -> AdaptiveResult:
    """A plain probe as an encode's result, with its real RD cost like any other."""
    diff = (res.decoded.rgb.astype(np.float64) - img.rgb.astype(np.float64)) / 255.0
    cost = res.bpp + lmbda * 255.0**2 * float(np.mean(diff**2))
    return AdaptiveResult(res, "plain", {"plain": cost}, {}, points={"plain": (res.bpp, res.psnr)})


def weighted_psnr(res: EncodeResult, img: CodecImage, roi: np.ndarray) -> float:
    """PSNR of the file with each pixel's squared error weighted by the (mean 1) region map."""
    err = ((res.decoded.rgb.astype(np.float64) - img.rgb.astype(np.float64)) / 255.0) ** 2
    mse = float(np.mean(err * roi[..., None]))
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else float("inf")


def _reaimed(target: RateTarget, plain: EncodeResult, adapted: EncodeResult) -> RateTarget | None:
    """The plain target whose level should make the adaptive file land on ``target``: the target
    scaled by the size ratio (or shifted by the PSNR difference) adaptation produced at the last level."""
    if target.is_size:
        return target.scaled(len(plain.data) / len(adapted.data))
    value = target.value + (plain.psnr - adapted.psnr)
    return replace(target, value=value) if PSNR_LIMITS[0] <= value <= PSNR_LIMITS[1] else None


def encode_to_target(
    base: BaseModel,
    img: CodecImage,
    target: RateTarget,
    cfg: AdaptConfig,
    registry: Registry,
    progress: ProgressCallback = no_progress,
    device: torch.device | None = None,
    reaim: bool = True,
    roi: np.ndarray | None = None,
) -> TargetOutcome:
    """Search the level for ``target`` on plain files, then run ``cfg`` there (re-aiming once when
    adaptation moved the file out of the target's window, unless ``reaim`` is False). See the module
    notes."""
    if not base.variable_rate:
        raise InvalidTargetError(f"a target needs a variable-rate model (like 'default'), not {base.name}")
    search = LevelSearch(base, img, registry, progress)
    if cfg.is_plain or not target.is_size:
        level, status = search.find(target)
    else:  # adaptation moves the size by a few percent either way: aim at the window's middle
        aim = target.scaled(1.0 - ADAPTIVE_SIZE_TOLERANCE / 2)
        level, status = search.find(aim, tolerance=AIM_TOLERANCE)
    plain = search.probes[level]
    runs: list[tuple[float, AdaptiveResult]] = []
    t0, searched = time.monotonic(), search.seconds
    if not cfg.is_plain:
        runs = _adaptive_runs(search, target, cfg, level, status, (progress, device, roi), reaim)
    adaptive_s = time.monotonic() - t0 - (search.seconds - searched)
    files = [plain] + [r.result for _, r in runs]
    score = None if roi is None else (lambda r: weighted_psnr(r, img, roi))
    best = best_file(target, files, ADAPTIVE_SIZE_TOLERANCE if runs else SIZE_TOLERANCE, score)
    chosen = next(((lv, r) for lv, r in runs if r.result is best), None)
    if chosen is None:
        adaptive = _plain_result(plain, img, base.lmbda_at(level))
        final_level = level
    else:
        final_level, adaptive = chosen
    met = target.meets(best)
    if status == "reached" and not target.within(best, ADAPTIVE_SIZE_TOLERANCE if runs else SIZE_TOLERANCE):
        status = "approximate"
    report = TargetReport(
        target,
        target.measure(best),
        status,
        met,
        len(search.probes),
        len(runs),
        search.seconds,
        adaptive_s,
        final_level,
    )
    return TargetOutcome(adaptive, report)


def _adaptive_runs(
    search: LevelSearch,
    target: RateTarget,
    cfg: AdaptConfig,
    level: float,
    status: str,
    run_with: tuple[ProgressCallback, torch.device | None, np.ndarray | None],
    reaim: bool,
) -> list[tuple[float, AdaptiveResult]]:
    """The adaptive encode at ``level``, and a second one at a re-aimed level when the first left the
    target's window. With a time budget the first run gets 60 % of it and the re-aim what is left
    (skipped when that is under 20 %)."""
    base, img, reg = search.base, search.img, search.registry
    progress, device, roi = run_with
    budget = cfg.time_budget_s
    t0 = time.monotonic()
    first = cfg if budget is None else replace(cfg, time_budget_s=budget * 0.6)
    runs = [(level, encode_with_config(base, img, level, first, reg, progress, device, roi))]
    adapted = runs[0][1].result
    if not reaim or status != "reached" or target.within(adapted, ADAPTIVE_SIZE_TOLERANCE):
        return runs
    middle = target.scaled(1.0 - ADAPTIVE_SIZE_TOLERANCE / 2) if target.is_size else target
    aim = _reaimed(middle, search.probes[level], adapted)
    left = None if budget is None else budget - (time.monotonic() - t0)
    if aim is None or (budget is not None and left is not None and left < 0.2 * budget):
        return runs
    level2, _ = search.find(aim, max_probes=4, tolerance=AIM_TOLERANCE)
    if level2 == level:
        return runs
    rerun = replace(cfg, time_budget_s=left)
    runs.append((level2, encode_with_config(base, img, level2, rerun, reg, progress, device, roi)))
    return runs
