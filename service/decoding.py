"""Decoding in the API: the checks before any byte reaches the entropy decoder, lanes by size so that
a small decode never waits behind a large one, a decode-memory budget, and a cache of the decoded
images of stored bitstreams.

Design (issue 12, "no head-of-line blocking"):

- **Why processes.** The codec decodes under a process-wide lock (``canonical_compute``: the torch
  thread count is process-wide), so two decodes in one process run one after the other. Threads,
  or lanes of threads, cannot help: each lane needs its own processes (:mod:`service.decode_lanes`).
- **Why lanes rather than one pool.** With one pool, N large decodes occupy N processes and a Kodak
  image waits minutes behind them. Two lanes, by *padded* pixel count (known from the header before
  any decoding), each with its own processes: the small lane (``UDIC_DECODE_SMALL_MAX_PIXELS``, full
  HD and below by default) is never occupied by a large image, so its wait is bounded by other small
  decodes (a fraction of a second each).
- **Why a lower CPU priority for the large lane.** Separate processes still share the cores: on 2
  cores a Kodak decode took 1.3 s (p50) next to a running 12 Mpixel one. The large lane's processes
  run at ``UDIC_DECODE_LARGE_NICE`` (10), so the OS serves small decodes first: 0.5 s (p50), and
  the large decode takes what the small ones leave (``service/bench_decode_lanes.py``).
- **Why not a queued job.** A decode is a request/response call that ends in seconds to a minute; a
  job would make every client poll, and the queue's workers encode (minutes) so a decode could
  wait behind encodes. The large lane gives the same isolation without changing the API.
- **Memory.** Each decode costs about ``UDIC_DECODE_BYTES_PER_PIXEL`` per padded pixel (measured:
  peak minus an idle decoder process). The small lane can use at most its processes times its
  largest image; the large lane is admitted against what is left of ``UDIC_DECODE_MEMORY_BUDGET_MB``,
  and an image that could never fit is refused with 422 at once.
- **Saturation.** Per lane at most ``UDIC_DECODE_QUEUE_DEPTH`` requests wait, each at most
  ``UDIC_DECODE_WAIT_TIMEOUT_S``; then 503 ``urn:udic:problem:decoder-busy`` with ``Retry-After``.
- **Cache.** ``GET /v1/bitstreams/{id}/image`` keeps the PNG in a bounded in-memory LRU
  (``UDIC_DECODED_IMAGE_CACHE_MB``), concurrent requests for one image share one decode, and an
  entry expires when its bitstream does (finished time + ``UDIC_RETENTION_S``; the route also checks
  that the bitstream still exists). Memory rather than blob storage: a PNG file would outlive the
  bitstream (the retention sweep goes by file age), and a decoded image is bigger than the bitstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from codec.bitstream import BitstreamError
from codec.coder import PAD_MULTIPLE, decode_image, read_header
from codec.tiling import TilingPolicy, tiling_policy
from codec.zoo import ModelError, Registry
from service.core.config import Settings, get_settings
from service.core.errors import ProblemError
from service.core.model_registry import registry, registry_for
from service.decode_lanes import DecoderBusy, DecoderFailed, Lane, decode_cost_bytes
from service.metrics_registry import DECODE_SECONDS

log = logging.getLogger("udic.api")
MIB = 1024 * 1024
PNG_LEVEL = 1


@dataclass(frozen=True)
class DecodePlan:
    """What the header says a decode will cost, before any decoding."""

    width: int
    height: int
    padded_pixels: int
    cost_bytes: int


@dataclass(frozen=True)
class Decoded:
    png: bytes
    decode_s: float  # the codec's decode
    png_s: float  # writing the PNG


@dataclass(frozen=True)
class Refusal:
    """A ProblemError raised in a decoder process, as plain data: an exception whose constructor
    takes more than its message does not unpickle in the API process."""

    status: int
    kind: str
    title: str
    detail: str


def plan_decode(data: bytes, settings: Settings) -> DecodePlan:
    """Header checks (422 for what the client sent wrong) and the decode's memory estimate."""
    if not data:
        raise ProblemError(422, "empty-bitstream", "Empty bitstream", "the request had no bytes to decode")
    try:
        header = read_header(data)
    except BitstreamError as exc:
        raise ProblemError(422, exc.kind, "Invalid bitstream", str(exc)) from None
    w, h = cast(int, header["width"]), cast(int, header["height"])  # read_header's image size
    padded = (w + (-w) % PAD_MULTIPLE) * (h + (-h) % PAD_MULTIPLE)
    if max(w * h, padded) > settings.max_pixels:
        raise ProblemError(
            422,
            "image-too-large",
            "Image too large",
            f"the bitstream decodes to {w}x{h} pixels ({padded} once padded to multiples of {PAD_MULTIPLE}), "
            f"more than this server's limit of {settings.max_pixels}",
        )
    try:  # decoder processes run torch's default threads: one tile per core at once
        cost = decode_cost_bytes(
            data, padded, settings.decode_bytes_per_pixel, settings.decode_tiled_bytes_per_pixel, os.cpu_count() or 1
        )
    except BitstreamError as exc:
        raise ProblemError(422, exc.kind, "Invalid bitstream", str(exc)) from None
    return DecodePlan(w, h, padded, cost)


def tiling_of(settings: Settings) -> TilingPolicy:
    """The configured tiling (UDIC_TILE_THRESHOLD_PIXELS, UDIC_TILE_PX): which decodes run in tiles."""
    return TilingPolicy.from_pixels(settings.tile_threshold_pixels, settings.tile_px)


def _decode_checked(data: bytes, reg: Registry, max_pixels: int, tiling: TilingPolicy) -> Decoded:
    t = time.perf_counter()
    try:
        with tiling_policy(tiling):
            img = decode_image(data, registry=reg, max_pixels=max_pixels)
    except BitstreamError as exc:
        raise ProblemError(422, exc.kind, "Invalid bitstream", str(exc)) from None
    except ModelError as exc:
        raise ProblemError(422, exc.kind, "Model not available", str(exc)) from None
    seconds = time.perf_counter() - t
    # zlib level 1: 5x faster than level 6 for 13-18 % more bytes (measured on kodim23, 0.4 and
    # 3 Mpixel); at level 6 the PNG took a quarter of a Kodak decode's time
    buf = io.BytesIO()
    img.to_pil().save(buf, format="PNG", compress_level=PNG_LEVEL)
    return Decoded(buf.getvalue(), seconds, time.perf_counter() - t - seconds)


def decode_to_png(data: bytes) -> tuple[bytes, float]:
    """Decode in this process (the CLI-like path, and tests): PNG bytes and decode seconds;
    raises ProblemError (4xx) for anything the client sent wrong."""
    settings = get_settings()
    plan_decode(data, settings)
    out = _decode_checked(data, registry(), settings.max_pixels, tiling_of(settings))
    return out.png, out.decode_s


# --- in a decoder process --------------------------------------------------------------------------
_worker: dict[str, Registry] = {}
_worker_limits: dict[str, int] = {}
_worker_tiling: dict[str, TilingPolicy] = {}


def _init_worker(settings: Settings, nice: int) -> None:
    """A decoder process's start: its CPU priority, and its registry with the default model loaded
    now rather than in the first request.

    Threads stay torch's default (all cores): the synthesis then gives the same pixels as the CLI's
    decode on this machine, and a large decode uses every core. The large lane runs at a lower
    priority (``nice``): when a small decode arrives, the OS gives it the cores first, so it is not
    slowed down behind a large one either (measured in the README's decoding paragraph)."""
    if nice:
        os.nice(nice)
    reg = registry_for(settings)
    with contextlib.suppress(Exception):  # a missing default model is reported by the decode that needs it
        reg.get(settings.default_model)
    _worker["registry"] = reg
    _worker_limits["max_pixels"] = settings.max_pixels
    _worker_tiling["policy"] = tiling_of(settings)


def _release_heap() -> None:
    """Give freed heap back to the OS, so that one large decode does not pin its peak in the process."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def worker_decode(data: bytes) -> Decoded | Refusal:
    """Runs in a decoder process (the header was checked by the API already)."""
    try:
        return _decode_checked(data, _worker["registry"], _worker_limits["max_pixels"], _worker_tiling["policy"])
    except ProblemError as exc:
        return Refusal(exc.status, exc.kind, exc.title, exc.detail)
    finally:
        _release_heap()


# --- in the API process ----------------------------------------------------------------------------
class ImageCache:
    """Decoded PNGs by job id: LRU bounded in bytes, each entry with its own expiry time.
    Used from the event loop only (no lock)."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.used = max_bytes, 0
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= time.time():
            self.discard(key)
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: str, png: bytes, expires_at: float) -> None:
        self.discard(key)
        if len(png) > self.max_bytes or expires_at <= time.time():
            return
        while self.used + len(png) > self.max_bytes:
            self.discard(next(iter(self._entries)))
        self._entries[key] = (png, expires_at)
        self.used += len(png)

    def discard(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.used -= len(entry[0])

    def __len__(self) -> int:
        return len(self._entries)


class Decoder:
    """The API's decoder: the two lanes, the memory split between them, the image cache."""

    def __init__(self, settings: Settings):
        s = self.settings = settings
        budget = s.decode_memory_budget_mb * MIB
        small_reserve = s.decode_small_workers * s.decode_small_max_pixels * s.decode_bytes_per_pixel
        if small_reserve >= budget:
            raise ValueError(
                f"UDIC_DECODE_MEMORY_BUDGET_MB={s.decode_memory_budget_mb} leaves nothing for large decodes: "
                f"the small lane alone may use {small_reserve // MIB} MiB"
            )
        self.small = self._lane("small", s.decode_small_workers, None, nice=0)
        self.large = self._lane("large", s.decode_large_workers, budget - small_reserve, nice=s.decode_large_nice)
        self.cache = ImageCache(s.decoded_image_cache_mb * MIB)
        self._stored: dict[str, asyncio.Future[bytes]] = {}

    def _lane(self, name: str, workers: int, memory_bytes: int | None, nice: int) -> Lane:
        s = self.settings
        return Lane(
            name,
            workers,
            memory_bytes=memory_bytes,
            queue_depth=s.decode_queue_depth,
            wait_timeout_s=s.decode_wait_timeout_s,
            min_retry_after_s=s.retry_after_s,
            initializer=_init_worker,
            initargs=(s, nice),
        )

    def start(self) -> None:
        self.small.warm()
        self.large.warm()

    def close(self) -> None:
        self.small.close()
        self.large.close()

    @property
    def decodes(self) -> int:
        """Decodes run to the end in the lanes' processes."""
        return self.small.completed + self.large.completed

    def lane_for(self, plan: DecodePlan) -> Lane:
        return self.small if plan.padded_pixels <= self.settings.decode_small_max_pixels else self.large

    async def decode(self, data: bytes) -> Decoded:
        """PNG of a bitstream: 422 for a bad one, 503 + Retry-After when its lane is saturated."""
        t = time.perf_counter()
        plan = plan_decode(data, self.settings)
        lane = self.lane_for(plan)
        if not lane.fits(plan.cost_bytes):
            raise ProblemError(
                422,
                "image-too-large",
                "Image too large to decode here",
                f"decoding {plan.width}x{plan.height} needs about {plan.cost_bytes // MIB} MiB, more than this "
                f"server's decode memory for large images ({(lane.memory_bytes or 0) // MIB} MiB)",
            )
        try:
            out, waited = await lane.run(worker_decode, data, cost_bytes=plan.cost_bytes, pixels=plan.padded_pixels)
        except (DecoderBusy, DecoderFailed) as exc:
            busy = isinstance(exc, DecoderBusy)
            log.warning(
                "decoder busy" if busy else "decoder failed",
                extra={"lane": exc.lane, "reason": str(exc), "size": f"{plan.width}x{plan.height}"},
            )
            raise ProblemError(
                503,
                "decoder-busy" if busy else "decoder-failed",
                "Decoder busy" if busy else "Decoder failed",
                f"{exc}; retry later",
                headers={"Retry-After": str(exc.retry_after_s)},
                lane=exc.lane,
            ) from None
        if isinstance(out, Refusal):
            raise ProblemError(out.status, out.kind, out.title, out.detail)
        DECODE_SECONDS.observe(out.decode_s)
        log.info(
            "decoded",
            extra={
                "lane": lane.name,
                "size": f"{plan.width}x{plan.height}",
                "bytes": len(data),
                "wait_s": round(waited, 4),
                "decode_s": round(out.decode_s, 4),
                "png_s": round(out.png_s, 4),
                "total_s": round(time.perf_counter() - t, 4),
            },
        )
        return out

    async def stored_png(self, job_id: str, expires_at: float, load: Callable[[], Awaitable[bytes]]) -> bytes:
        """The PNG of a stored bitstream: from the cache, or decoded once however many ask at once."""
        png = self.cache.get(job_id)
        if png is not None:
            log.info("decoded image from cache", extra={"job_id": job_id})
            return png
        fut = self._stored.get(job_id)
        if fut is None:
            fut = asyncio.ensure_future(self._decode_stored(job_id, expires_at, load))
            self._stored[job_id] = fut
            fut.add_done_callback(lambda _: self._stored.pop(job_id, None))
        return await asyncio.shield(fut)

    async def _decode_stored(self, job_id: str, expires_at: float, load: Callable[[], Awaitable[bytes]]) -> bytes:
        png = (await self.decode(await load())).png
        self.cache.put(job_id, png, expires_at)
        return png
