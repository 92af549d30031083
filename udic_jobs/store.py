"""Job records in Redis: the only module that knows the key layout.

Keys (``prefix`` is ``UDIC_KEY_PREFIX``, "udic" by default), all expiring after the retention:

- ``{prefix}:job:{id}`` -- the record (a hash, :class:`~udic_jobs.records.JobRecord`)
- ``{prefix}:job:{id}:cancel`` -- set when the user asked to cancel a running job
- ``{prefix}:jobs:{owner}`` -- the owner's job ids, scored by creation time (a sorted set)
- ``{prefix}:idem:{owner}:{key}`` -- an Idempotency-Key claim: the job id and a request fingerprint
- ``{prefix}:webhooks`` -- jobs whose terminal-state event is due, scored by when (a sorted set;
  delivery: ``service/webhooks.py``)
- ``{prefix}:stats:jobs`` (hash, count per event) and ``{prefix}:stats:encode_seconds`` (list of the
  last 1000 encode durations): the figures ``/metrics`` reports

The per-owner fair-use keys (unfinished jobs, jobs waiting their turn, request counts) are laid
out by :class:`udic_jobs.owners.OwnerBook` (``store.owners``).

The API and the worker both go through this class, so a change of layout is made here once. The
``mark_*`` methods are the state transitions; each counts its event in the stats, and the ending
ones take the job off its owner's unfinished jobs.
"""

from __future__ import annotations

import json
from typing import Any, cast

from redis import Redis
from redis.typing import EncodableT, FieldT

from udic_jobs.owners import OwnerBook
from udic_jobs.records import JobRecord, encode_field, now

ENCODE_SECONDS_KEPT = 1000


def _fields(values: dict[str, str]) -> dict[FieldT, EncodableT]:
    """The same hash fields, typed as redis-py's ``hset`` takes them (its Mapping is invariant)."""
    return dict(values.items())


class JobStore:
    def __init__(self, redis: Redis, prefix: str, retention_s: int):
        self.r, self.prefix, self.retention_s = redis, prefix, retention_s
        self.owners = OwnerBook(redis, prefix, retention_s)

    def key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def cancel_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:cancel"

    def owner_key(self, owner: str) -> str:
        return f"{self.prefix}:jobs:{owner}"

    def stats_key(self, name: str) -> str:
        return f"{self.prefix}:stats:{name}"

    # --- records ------------------------------------------------------------------------
    def create(self, rec: JobRecord) -> None:
        with self.r.pipeline() as p:
            p.hset(self.key(rec.id), mapping=_fields(rec.to_redis()))
            p.expire(self.key(rec.id), self.retention_s)
            p.zadd(self.owner_key(rec.owner), {rec.id: rec.created_at})
            p.expire(self.owner_key(rec.owner), self.retention_s)
            p.execute()

    def get(self, job_id: str) -> JobRecord | None:
        raw = cast("dict[bytes, bytes]", self.r.hgetall(self.key(job_id)))  # a sync client: never awaitable
        return JobRecord.from_redis(raw) if raw else None

    def snapshot(self, job_id: str, rq_key: str) -> tuple[JobRecord | None, bool, str | None]:
        """The record, whether a cancel was asked, and the ``status`` field of the hash ``rq_key``
        (rq's job, named by the caller: this package does not know rq), in one round trip (MULTI:
        the three are read at one instant, so a worker's writes are seen all or none)."""
        with self.r.pipeline() as p:
            p.hgetall(self.key(job_id))
            p.exists(self.cancel_key(job_id))
            p.hget(rq_key, "status")
            raw, cancel, status = p.execute()
        rec = JobRecord.from_redis(raw) if raw else None
        return rec, bool(cancel), status.decode() if status is not None else None

    def snapshots(self, ids: list[str], rq_key: str) -> list[tuple[JobRecord, bool, str | None]]:
        """:meth:`snapshot` of many jobs in one round trip (``rq_key`` has ``{id}`` in it); expired
        records are left out."""
        with self.r.pipeline() as p:
            for job_id in ids:
                p.hgetall(self.key(job_id))
                p.exists(self.cancel_key(job_id))
                p.hget(rq_key.format(id=job_id), "status")
            out = p.execute()
        rows = []
        for i in range(0, len(out), 3):
            raw, cancel, status = out[i : i + 3]
            if raw:
                rows.append((JobRecord.from_redis(raw), bool(cancel), status.decode() if status is not None else None))
        return rows

    def recent(self, owner: str, limit: int) -> list[JobRecord]:
        """The owner's records, newest first (those already expired are left out)."""
        ids = cast("list[bytes]", self.r.zrevrange(self.owner_key(owner), 0, limit - 1))
        recs = (self.get(raw.decode()) for raw in ids)
        return [rec for rec in recs if rec is not None]

    def older_ids(self, owner: str, before: tuple[float, str] | None, count: int) -> list[tuple[str, float]]:
        """Up to ``count`` of the owner's job ids (with creation times), newest first, strictly older
        than the position ``before`` = (created_at, id); ties in time are ordered by id."""
        key = self.owner_key(owner)
        if before is None:
            raw = self.r.zrevrange(key, 0, count - 1, withscores=True)
        else:
            # members with the cursor's own score come first (then by id, descending): skip up to it
            raw = self.r.zrevrangebyscore(key, before[0], "-inf", start=0, num=count + 64, withscores=True)
        rows = [(m.decode(), float(s)) for m, s in cast("list[tuple[bytes, float]]", raw)]
        if before is not None:
            rows = [(i, s) for i, s in rows if s < before[0] or (s == before[0] and i < before[1])]
        return rows[:count]

    def update(self, job_id: str, **fields: Any) -> None:
        mapping = _fields({k: encode_field(k, v) for k, v in fields.items()})
        if not self.r.exists(self.key(job_id)):
            return  # expired or deleted: never resurrect a partial record
        self.r.hset(self.key(job_id), mapping=mapping)

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        self.update(job_id, progress=progress)

    # --- state transitions --------------------------------------------------------------
    def mark_running(self, rec: JobRecord) -> float:
        """A worker took the job (again, after a retry); returns the start time."""
        started = now()
        self.update(rec.id, state="running", started_at=started, attempts=rec.attempts + 1, error={})
        return started

    def mark_finished(self, job_id: str, **fields: Any) -> None:
        self.update(job_id, state="finished", finished_at=now(), **fields)
        self.count_state("finished")
        self._ended(job_id)

    def mark_failed(self, job_id: str, kind: str, detail: str) -> None:
        self.update(job_id, state="failed", finished_at=now(), error={"type": kind, "detail": detail})
        self.count_state("failed")
        self._ended(job_id)

    def mark_cancelled(self, job_id: str) -> None:
        self.update(job_id, state="cancelled", finished_at=now(), error={})
        self.count_state("cancelled")
        self._ended(job_id)

    def _ended(self, job_id: str) -> None:
        """The job no longer counts against its owner's limit of unfinished jobs, and its webhook
        event (if it has a callback URL) is due now: a Redis write, so no worker waits on delivery."""
        owner, url, hook = cast(
            "list[bytes | None]", self.r.hmget(self.key(job_id), ["owner", "callback_url", "webhook"])
        )
        if owner is not None:
            self.owners.release(owner.decode(), job_id)
        if url and not json.loads(hook or b"{}"):
            self.update(job_id, webhook={"url": url.decode(), "state": "pending", "attempts": []})
            self.schedule_webhook(job_id, now())

    # --- webhooks -------------------------------------------------------------------------
    @property
    def webhooks_key(self) -> str:
        return f"{self.prefix}:webhooks"

    def schedule_webhook(self, job_id: str, at: float) -> None:
        self.r.zadd(self.webhooks_key, {job_id: at})

    def due_webhooks(self, at: float, count: int) -> list[str]:
        raw = cast("list[bytes]", self.r.zrangebyscore(self.webhooks_key, "-inf", at, start=0, num=count))
        return [m.decode() for m in raw]

    def claim_webhook(self, job_id: str) -> bool:
        """Take a due delivery off the schedule; False when another process took it first."""
        return bool(self.r.zrem(self.webhooks_key, job_id))

    def mark_retrying(self, job_id: str, kind: str, detail: str) -> None:
        """Back to the queue after a lost worker; the reason stays visible while it waits."""
        self.update(job_id, state="queued", error={"type": kind, "detail": detail})

    # --- cancellation -------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> None:
        self.r.set(self.cancel_key(job_id), b"1", ex=self.retention_s)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.exists(self.cancel_key(job_id)))

    # --- statistics ---------------------------------------------------------------------
    def count_state(self, state: str, delta: int = 1) -> None:
        self.r.hincrby(self.stats_key("jobs"), state, delta)

    def record_encode_seconds(self, seconds: float) -> None:
        with self.r.pipeline() as p:
            p.rpush(self.stats_key("encode_seconds"), seconds)
            p.ltrim(self.stats_key("encode_seconds"), -ENCODE_SECONDS_KEPT, -1)
            p.execute()

    def job_counts(self) -> dict[str, int]:
        """How many jobs were created, finished, failed and cancelled (by every API and worker)."""
        raw = cast("dict[bytes, bytes]", self.r.hgetall(self.stats_key("jobs")))
        return {k.decode(): int(v) for k, v in raw.items()}

    def encode_seconds(self) -> list[float]:
        """The durations of the last ENCODE_SECONDS_KEPT finished encodes."""
        return [float(x) for x in cast("list[bytes]", self.r.lrange(self.stats_key("encode_seconds"), 0, -1))]

    # --- idempotency --------------------------------------------------------------------
    def idempotent_job(self, owner: str, key: str, fingerprint: str, job_id: str) -> tuple[str, bool]:
        """Claim ``key`` for ``job_id``; returns (job id, created). Raises ValueError when the key
        was used before for a different request."""
        rkey = f"{self.prefix}:idem:{owner}:{key}"
        value = json.dumps({"job": job_id, "fp": fingerprint})
        if self.r.set(rkey, value, nx=True, ex=self.retention_s):
            return job_id, True
        raw = cast("bytes | None", self.r.get(rkey))
        if raw is None:  # expired between the two calls: claim again
            return self.idempotent_job(owner, key, fingerprint, job_id)
        prior = json.loads(raw)
        if prior["fp"] != fingerprint:
            raise ValueError("Idempotency-Key was already used for a different request")
        return str(prior["job"]), False
