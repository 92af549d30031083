"""Fair use per API key: a request-rate limit, a limit on unfinished jobs, and a fair queue.

**Rate.** Each key gets ``UDIC_RATE_LIMIT_REQUESTS`` requests per fixed window of
``UDIC_RATE_LIMIT_WINDOW_S`` seconds, counted in Redis so that every API process shares the count;
one more is answered 429 with ``Retry-After`` = the seconds left in the window. Without API keys
there is nobody to tell apart, and no rate limit.

**Unfinished jobs.** An owner may have ``UDIC_MAX_ACTIVE_JOBS_PER_OWNER`` queued + running jobs;
the next submission is answered 429 (``Retry-After``: ``UDIC_ACTIVE_JOBS_RETRY_AFTER_S``) before its
upload is stored. This holds for the anonymous owner too (then it caps the whole backlog).

**Fair queue: why a gate in front of rq, not per-owner rq queues.** rq workers serve their queues in
a fixed priority order (or round-robin over a fixed list given at start-up), and owners come and go
while workers run; per-owner queues would need a worker that rediscovers queues on every dequeue.
Instead each owner may have at most ONE job waiting in the one rq queue (its "head"); the others
wait in the owner's pending list in Redis (:class:`udic_jobs.owners.OwnerBook`). When the head is
taken by a worker (or ends, or is cancelled), :meth:`FairGate.pump` moves the owner's next job to
the back of the rq queue. So the rq queue holds at most one waiting job per owner, in the order in
which owners became ready: with N owners waiting, a new owner's single job has at most N - 1 jobs
ahead of it, however long anyone's backlog is -- a round-robin between owners, with the workers
unchanged. :func:`dispatch_forever` pumps every owner with pending jobs every
``UDIC_FAIR_DISPATCH_INTERVAL_S`` (in each API process; a per-owner Redis lock makes that safe),
so a freed head is refilled within that interval even when nobody calls the API.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import LockError
from redis.lock import Lock
from rq.job import Job

from service.core.config import Settings
from service.core.errors import ProblemError
from udic_jobs import TERMINAL, JobRecord, JobStore

log = logging.getLogger("udic.api")
#: rq statuses of a job still waiting in the queue (not taken by a worker yet)
WAITING = frozenset({"queued", "deferred", "scheduled", "created"})
LOCK_TIMEOUT_S = 10


def too_many(detail: str, retry_after: float, kind: str) -> ProblemError:
    seconds = max(1, math.ceil(retry_after))
    return ProblemError(429, kind, "Too many requests", detail, headers={"Retry-After": str(seconds)})


class RateLimiter:
    """Fixed windows counted in Redis, claimed a few requests at a time.

    Why claims: a Redis round trip per request would double the cost of a poll (whose own read is
    one round trip). Each API process takes ``lease`` requests of the key's window at once
    (INCRBY) and admits them locally; only the requests below the limit are admitted, so several
    processes together never admit more than the limit -- at worst a few fewer, as each may hold
    up to ``lease - 1`` unused ones when the window fills. ``lease`` is 1/100 of the limit
    (at least 1): 6 for the default 600 per 10 s."""

    def __init__(self, store: JobStore, settings: Settings):
        self.book, self.settings = store.owners, settings
        self.lease = max(1, settings.rate_limit_requests // 100)
        self._held: dict[str, tuple[int, int]] = {}  # owner -> (window, requests still admitted)
        self._lock = threading.Lock()

    def check(self, owner: str) -> None:
        """429 when the key made more requests than its window allows (no keys: no limit)."""
        s = self.settings
        if not s.rate_limit_requests or not s.auth_enabled:
            return
        now = time.time()
        window = int(now // s.rate_limit_window_s)
        with self._lock:
            held_window, left = self._held.get(owner, (window, 0))
            if held_window == window and left > 0:
                self._held[owner] = (window, left - 1)
                return
        full = held_window == window and left < 0  # this window is used up: no need to ask Redis
        if not full:
            window, count, _ = self.book.hit(owner, s.rate_limit_window_s, self.lease)
            admitted = max(0, min(count, s.rate_limit_requests) - (count - self.lease))
            with self._lock:
                self._held[owner] = (window, admitted - 1 if admitted else -1)
            if admitted:
                return
        raise too_many(
            f"more than {s.rate_limit_requests} requests in {s.rate_limit_window_s} s for this API key",
            (window + 1) * s.rate_limit_window_s - now,
            "rate-limited",
        )


class FairGate:
    """Admission (the per-owner job limit) and the fair hand-over of jobs to rq (module docstring)."""

    def __init__(self, store: JobStore, redis: Redis, settings: Settings, enqueue: Callable[[JobRecord], None]):
        self.store, self.book, self.r, self.settings = store, store.owners, redis, settings
        self.enqueue = enqueue

    def admit(self, owner: str, job_id: str) -> None:
        """Count the job against the owner's limit of unfinished jobs, or answer 429."""
        limit = self.settings.max_active_jobs_per_owner
        if not self.book.claim(owner, job_id, limit):
            raise too_many(
                f"this API key has {limit} unfinished jobs, the most allowed; wait for one to end",
                self.settings.active_jobs_retry_after_s,
                "too-many-jobs",
            )

    def release(self, owner: str, job_id: str) -> None:
        self.book.release(owner, job_id)

    def submit(self, rec: JobRecord) -> None:
        """Put a stored job in line behind its owner's other jobs, and hand it over if it is next."""
        self.book.push_pending(rec.owner, rec.id)
        self.pump(rec.owner)

    def withdraw(self, rec: JobRecord) -> None:
        """A cancelled job leaves the line (a pump skips cancelled jobs anyway); if it was the
        owner's head, the next one moves up."""
        self.book.remove_pending(rec.owner, rec.id)
        self.pump(rec.owner)

    def pump(self, owner: str) -> None:
        """Hand the owner's next job to rq if its head has left the queue. When another process
        holds the owner's lock it is doing just that: this one leaves it (the dispatch loop comes
        back within the interval), so a request never waits long on the lock."""
        try:
            with self._lock(owner):
                self._pump_locked(owner)
        except LockError:
            log.info("fair dispatch: owner busy elsewhere", extra={"owner": owner})

    def pump_all(self) -> None:
        for owner in self.book.pending_owners():
            self.pump(owner)

    def _lock(self, owner: str) -> Lock:
        return self.r.lock(f"{self.store.prefix}:fair-lock:{owner}", timeout=LOCK_TIMEOUT_S, blocking_timeout=2)

    def _waiting(self, job_id: str) -> bool:
        status = self.r.hget(Job.key_for(job_id), "status")
        return isinstance(status, bytes) and status.decode() in WAITING

    def _pump_locked(self, owner: str) -> None:
        head = self.book.head(owner)
        if head is not None and self._waiting(head):
            return
        while (job_id := self.book.pop_pending(owner)) is not None:
            rec = self.store.get(job_id)
            if rec is None or rec.state in TERMINAL or self.store.cancel_requested(job_id):
                continue
            self.enqueue(rec)
            self.book.set_head(owner, job_id)
            break
        else:
            self.book.set_head(owner, None)
        self.book.forget_owner_if_idle(owner)


async def dispatch_forever(gate: FairGate, interval_s: float) -> None:
    """Refill every owner's head as workers take them (runs in the API's lifespan)."""
    while True:
        try:
            await asyncio.to_thread(gate.pump_all)
        except Exception:
            log.exception("fair dispatch failed")
        await asyncio.sleep(interval_s)
