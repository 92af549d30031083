"""Per-owner fair-use bookkeeping in Redis: unfinished jobs, jobs waiting their turn, request counts.

Keys (``prefix`` as in :mod:`udic_jobs.store`, which owns the rest of the layout):

- ``{prefix}:active:{owner}`` -- the owner's unfinished (queued or running) job ids, scored by the
  time they were admitted (a sorted set): its size is what the per-owner job limit counts
- ``{prefix}:pending:{owner}`` -- the owner's jobs not yet handed to the queue, oldest first (a list)
- ``{prefix}:head:{owner}`` -- the owner's job now waiting in the queue (at most one, see
  :mod:`service.fairness`)
- ``{prefix}:pending-owners`` -- owners with a non-empty pending list (a set)
- ``{prefix}:rate:{owner}:{window}`` -- requests in one fixed rate-limit window (a counter)

Only Redis here: the policy (what a limit is, when a job is handed to rq) is the API's.
"""

from __future__ import annotations

import time
from typing import cast

from redis import Redis

from udic_jobs.records import TERMINAL

#: an admitted job gets its record within moments; one without a record for this long never will
UNRECORDED_GRACE_S = 120.0
_FORGET_IF_EMPTY = """
if redis.call('llen', KEYS[1]) == 0 then return redis.call('srem', KEYS[2], ARGV[1]) end
return 0
"""


class OwnerBook:
    def __init__(self, redis: Redis, prefix: str, retention_s: int):
        self.r, self.prefix, self.retention_s = redis, prefix, retention_s

    def active_key(self, owner: str) -> str:
        return f"{self.prefix}:active:{owner}"

    def pending_key(self, owner: str) -> str:
        return f"{self.prefix}:pending:{owner}"

    def head_key(self, owner: str) -> str:
        return f"{self.prefix}:head:{owner}"

    @property
    def pending_owners_key(self) -> str:
        return f"{self.prefix}:pending-owners"

    # --- unfinished jobs ------------------------------------------------------------------
    def claim(self, owner: str, job_id: str, limit: int) -> bool:
        """Count ``job_id`` among the owner's unfinished jobs unless that makes more than ``limit``
        (one round trip; a full set is pruned of jobs that ended without being released first)."""
        key = self.active_key(owner)
        with self.r.pipeline() as p:
            p.zadd(key, {job_id: time.time()}, nx=True)
            p.expire(key, self.retention_s)
            p.zcard(key)
            count = int(p.execute()[2])
        if count > limit:
            count = self.prune(owner)
        if count > limit:
            self.r.zrem(key, job_id)
            return False
        return True

    def release(self, owner: str, job_id: str) -> None:
        self.r.zrem(self.active_key(owner), job_id)

    def prune(self, owner: str) -> int:
        """Drop ids whose record ended, or never came (admitted over UNRECORDED_GRACE_S ago: a
        request that failed after admission); returns the count left. A just-admitted job whose
        record is not written yet stays."""
        key = self.active_key(owner)
        rows = [
            (m.decode(), float(t))
            for m, t in cast("list[tuple[bytes, float]]", self.r.zrange(key, 0, -1, withscores=True))
        ]
        with self.r.pipeline() as p:
            for job_id, _ in rows:
                p.hget(f"{self.prefix}:job:{job_id}", "state")
            states = p.execute()
        old = time.time() - UNRECORDED_GRACE_S
        ended = [
            job_id
            for (job_id, admitted), state in zip(rows, states, strict=True)
            if (state is None and admitted < old) or (state is not None and state.decode() in TERMINAL)
        ]
        if ended:
            self.r.zrem(key, *ended)
        return len(rows) - len(ended)

    def active_count(self, owner: str) -> int:
        return int(self.r.zcard(self.active_key(owner)))

    # --- jobs waiting their turn --------------------------------------------------------
    def push_pending(self, owner: str, job_id: str) -> None:
        with self.r.pipeline() as p:
            p.rpush(self.pending_key(owner), job_id)
            p.expire(self.pending_key(owner), self.retention_s)
            p.sadd(self.pending_owners_key, owner)
            p.execute()

    def pop_pending(self, owner: str) -> str | None:
        raw = cast("bytes | None", self.r.lpop(self.pending_key(owner)))
        return raw.decode() if raw is not None else None

    def remove_pending(self, owner: str, job_id: str) -> None:
        self.r.lrem(self.pending_key(owner), 0, job_id)

    def pending_owners(self) -> list[str]:
        return sorted(raw.decode() for raw in cast("set[bytes]", self.r.smembers(self.pending_owners_key)))

    def forget_owner_if_idle(self, owner: str) -> None:
        """Leave the pending-owners set once the list is empty: one atomic step (a script), so a job
        pushed meanwhile (:meth:`push_pending` adds the owner back in the same transaction) is
        never left in a list nobody looks at."""
        self.r.eval(_FORGET_IF_EMPTY, 2, self.pending_key(owner), self.pending_owners_key, owner)

    def head(self, owner: str) -> str | None:
        raw = cast("bytes | None", self.r.get(self.head_key(owner)))
        return raw.decode() if raw is not None else None

    def set_head(self, owner: str, job_id: str | None) -> None:
        if job_id is None:
            self.r.delete(self.head_key(owner))
        else:
            self.r.set(self.head_key(owner), job_id, ex=self.retention_s)

    # --- request rate ---------------------------------------------------------------------
    def hit(self, owner: str, window_s: int, n: int = 1) -> tuple[int, int, float]:
        """Count ``n`` requests in the owner's current fixed window: (the window's number, requests
        counted so far, seconds left in it)."""
        t = time.time()
        window = int(t // window_s)
        key = f"{self.prefix}:rate:{owner}:{window}"
        with self.r.pipeline(transaction=False) as p:
            p.incrby(key, n)
            p.expire(key, window_s * 2)
            count = int(p.execute()[0])
        return window, count, (window + 1) * window_s - t
