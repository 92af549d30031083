"""A decode lane: a pool of decoder processes with bounded, timed admission (see :mod:`service.decoding`).

Why processes: the codec decodes under :func:`codec.determinism.canonical_compute`, which holds a
process-wide lock (``torch.set_num_threads`` is process-wide), so threads of one process decode one
after the other whatever lanes they are in. Each lane therefore owns its processes (``spawn``: no
fork of a process that runs threads), and a small decode never shares a process with a large one.

Admission happens here, in the API's event loop, before anything is sent to a process:

- a lane takes a request when it has a free process and, when it has a memory budget, enough of it
  for the request's estimate; it never hands the executor more work than it has processes, so no
  request waits where it cannot be counted or timed out;
- at most ``queue_depth`` requests wait, each at most ``wait_timeout_s``; beyond that the caller gets
  :class:`DecoderBusy` at once (the API answers 503 with ``Retry-After``), never a hang;
- a slot and its bytes come back when the process is done, not when the client goes away, so a
  cancelled request cannot make the lane overcommit;
- a process that dies (the OOM killer, a crash) breaks its pool: the lane starts a new pool and the
  requests it held get :class:`DecoderFailed`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from codec.bitstream import Container
from codec.tiling import LATENT_STRIDE, TileLayout

T = TypeVar("T")
log = logging.getLogger("udic.api")

#: working memory of one tile being synthesised, per pixel of its window (halo included): measured
#: +65 MB for two 512-pixel tiles at once (576x576 windows, ~100 B/px), with a margin
TILE_WINDOW_BYTES_PER_PIXEL = 128


def decode_cost_bytes(
    data: bytes, padded_pixels: int, whole_bytes_per_pixel: int, tiled_bytes_per_pixel: int, tile_workers: int
) -> int:
    """The memory a decode of ``data`` is admitted with, from its header alone.

    A file with the TILING field (``codec.tiling``) decodes in tiles: what grows with the image is
    the latents, the hyper-synthesis and the 8-bit output (measured 20-26 B a padded pixel at 12
    and 48 Mpixel, docs/guide/tiling.md: ``tiled_bytes_per_pixel``), plus a fixed working set per
    tile decoded at once (``tile_workers``, the decoder's threads). Every other file is estimated
    as a whole-image decode (``whole_bytes_per_pixel``): single-tile files above the tiling
    threshold may decode in tiles too, but not those of every model, so they keep the safe figure.
    A corrupt TILING field raises ``BitstreamError`` (the caller's 422)."""
    layout = TileLayout.from_container(Container.from_bytes(data))
    if layout is None:
        return padded_pixels * whole_bytes_per_pixel
    window = ((layout.tile + 2 * layout.halo) * LATENT_STRIDE) ** 2
    return padded_pixels * tiled_bytes_per_pixel + max(1, tile_workers) * window * TILE_WINDOW_BYTES_PER_PIXEL


class DecoderBusy(Exception):
    """The lane is saturated: too many waiting, or the wait ran past its timeout."""

    def __init__(self, lane: str, reason: str, retry_after_s: int):
        super().__init__(f"{lane} decode lane busy: {reason}")
        self.lane, self.reason, self.retry_after_s = lane, reason, retry_after_s


class DecoderFailed(Exception):
    """The process that held the request died (out of memory, a crash); the lane has a new pool."""

    def __init__(self, lane: str, retry_after_s: int):
        super().__init__(f"a {lane} decoder process stopped")
        self.lane, self.retry_after_s = lane, retry_after_s


def _exit_with_parent(parent: int) -> None:
    """A decoder process holds its own end of the pipe it reads work from, so it never sees EOF when
    the API dies (killed, or stopped while a decoder was still starting): it would wait forever,
    holding its memory. This thread ends it within a second of its parent."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _start_process(parent: int, initializer: Callable[..., object], initargs: tuple[Any, ...]) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), name="exit-with-parent", daemon=True).start()
    initializer(*initargs)


def _ready() -> bool:
    """Runs in a new process: it has run the initializer (model loaded) when this returns."""
    return True


class Lane:
    """``workers`` decoder processes; admission by free process and (optionally) memory bytes."""

    def __init__(
        self,
        name: str,
        workers: int,
        *,
        memory_bytes: int | None,
        queue_depth: int,
        wait_timeout_s: float,
        min_retry_after_s: int,
        initializer: Callable[..., object],
        initargs: tuple[Any, ...],
    ):
        self.name, self.workers, self.memory_bytes = name, workers, memory_bytes
        self.queue_depth, self.wait_timeout_s, self.min_retry_after_s = queue_depth, wait_timeout_s, min_retry_after_s
        self._initializer, self._initargs = initializer, initargs
        self._free_slots, self._free_bytes = workers, memory_bytes
        self._waiting = 0
        self._inflight_pixels = 0
        self._seconds_per_pixel = 1.5e-6  # single-thread synthesis, measured order; refined by each decode
        self._cond: asyncio.Condition | None = None
        self._releases: set[asyncio.Task[None]] = set()
        self._pool = self._new_pool()
        self.completed = 0  # decodes that ran to the end in a process (tests and metrics count them)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_process,
            initargs=(os.getpid(), self._initializer, self._initargs),
        )

    def warm(self) -> list[Future[bool]]:
        """Start every process now (import torch, load the default model) instead of on first use."""
        return [self._pool.submit(_ready) for _ in range(self.workers)]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def fits(self, cost_bytes: int) -> bool:
        """Whether one request of this cost can ever run in this lane (an idle lane's budget)."""
        return self.memory_bytes is None or cost_bytes <= self.memory_bytes

    def retry_after_s(self) -> int:
        """A hint for clients: the work in the processes now, at the recent speed, per process."""
        estimate = self._inflight_pixels * self._seconds_per_pixel / self.workers
        return int(min(600, max(self.min_retry_after_s, math.ceil(estimate))))

    def _admissible(self, cost_bytes: int) -> bool:
        return self._free_slots > 0 and (self._free_bytes is None or self._free_bytes >= cost_bytes)

    def _take(self, cost_bytes: int, pixels: int) -> None:
        self._free_slots -= 1
        if self._free_bytes is not None:
            self._free_bytes -= cost_bytes
        self._inflight_pixels += pixels

    async def _give_back(self, cost_bytes: int, pixels: int) -> None:
        assert self._cond is not None
        async with self._cond:
            self._free_slots += 1
            if self._free_bytes is not None:
                self._free_bytes += cost_bytes
            self._inflight_pixels -= pixels
            self._cond.notify_all()

    async def _admit(self, cost_bytes: int, pixels: int) -> float:
        """Wait (bounded in count and time) for a process and the bytes; returns the seconds waited."""
        if self._cond is None:
            self._cond = asyncio.Condition()
        t = time.perf_counter()
        async with self._cond:
            if not self._admissible(cost_bytes):
                if self._waiting >= self.queue_depth:
                    raise DecoderBusy(self.name, f"{self._waiting} requests already wait", self.retry_after_s())
                self._waiting += 1
                try:
                    await asyncio.wait_for(
                        self._cond.wait_for(lambda: self._admissible(cost_bytes)), self.wait_timeout_s
                    )
                except TimeoutError:
                    raise DecoderBusy(
                        self.name, f"no decoder free within {self.wait_timeout_s:g} s", self.retry_after_s()
                    ) from None
                finally:
                    self._waiting -= 1
            self._take(cost_bytes, pixels)
        return time.perf_counter() - t

    async def run(self, fn: Callable[..., T], *args: Any, cost_bytes: int, pixels: int) -> tuple[T, float]:
        """``fn(*args)`` in one of the lane's processes once admitted; returns its result and the
        seconds spent waiting for admission."""
        waited = await self._admit(cost_bytes, pixels)
        loop = asyncio.get_running_loop()
        pool, started = self._pool, time.perf_counter()

        def done(fut: Future[T]) -> None:  # in the executor's thread, or the loop's when cancelled
            seconds = time.perf_counter() - started
            ok = not fut.cancelled() and fut.exception() is None

            def release() -> None:  # in the loop's thread
                if ok:
                    self.completed += 1
                    self._seconds_per_pixel = 0.8 * self._seconds_per_pixel + 0.2 * seconds / max(1, pixels)
                task = loop.create_task(self._give_back(cost_bytes, pixels))
                self._releases.add(task)
                task.add_done_callback(self._releases.discard)

            loop.call_soon_threadsafe(release)

        try:
            fut = pool.submit(fn, *args)
        except BrokenProcessPool:
            await self._give_back(cost_bytes, pixels)
            self._restart(pool)
            raise DecoderFailed(self.name, self.retry_after_s()) from None
        fut.add_done_callback(done)
        try:
            return await asyncio.wrap_future(fut), waited
        except BrokenProcessPool:
            self._restart(pool)
            raise DecoderFailed(self.name, self.retry_after_s()) from None

    def _restart(self, broken: ProcessPoolExecutor) -> None:
        if self._pool is broken:
            log.error("decoder process died; new pool", extra={"lane": self.name})
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
