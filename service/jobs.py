"""Job records in Redis, and the one place that decides a job's state.

A record (hash ``{prefix}:job:{id}``) holds what the user asked for and what happened: owner,
options, file name, progress, metrics, error, and our own ``state``. rq holds the queue and the
execution. The state a user sees combines the two (:func:`resolve_state`): rq knows whether a job
is queued or running, the record knows whether it was cancelled and why it failed.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

STATES = ("queued", "running", "finished", "failed", "cancelled")
TERMINAL = {"finished", "failed", "cancelled"}


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class JobRecord:
    id: str
    owner: str
    state: str
    created_at: float
    options: dict[str, Any]
    filename: str = ""
    upload_key: str = ""
    upload_bytes: int = 0
    width: int = 0
    height: int = 0
    bitstream_key: str = ""
    progress: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0
    attempts: int = 0

    _JSON = ("options", "progress", "metrics", "error")

    def to_redis(self) -> dict[str, str]:
        out = {}
        for k, v in vars(self).items():
            out[k] = json.dumps(v) if k in self._JSON else str(v)
        return out

    @classmethod
    def from_redis(cls, raw: dict[bytes, bytes]) -> JobRecord:
        d = {k.decode(): v.decode() for k, v in raw.items()}
        kw: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            if name not in d:
                continue
            v = d[name]
            if name in cls._JSON:
                kw[name] = json.loads(v)
            elif f.type in ("float",):
                kw[name] = float(v)
            elif f.type in ("int",):
                kw[name] = int(float(v))
            else:
                kw[name] = v
        return cls(**kw)


class JobStore:
    def __init__(self, redis: Redis, prefix: str, retention_s: int):
        self.r, self.prefix, self.retention_s = redis, prefix, retention_s

    def key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def cancel_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:cancel"

    def create(self, rec: JobRecord) -> None:
        with self.r.pipeline() as p:
            p.hset(self.key(rec.id), mapping=rec.to_redis())
            p.expire(self.key(rec.id), self.retention_s)
            p.zadd(f"{self.prefix}:jobs:{rec.owner}", {rec.id: rec.created_at})
            p.expire(f"{self.prefix}:jobs:{rec.owner}", self.retention_s)
            p.execute()

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.r.hgetall(self.key(job_id))
        return JobRecord.from_redis(raw) if raw else None  # type: ignore[arg-type]

    def update(self, job_id: str, **fields: Any) -> None:
        mapping = {k: (json.dumps(v) if k in JobRecord._JSON else str(v)) for k, v in fields.items()}
        if not self.r.exists(self.key(job_id)):
            return  # expired or deleted: never resurrect a partial record
        self.r.hset(self.key(job_id), mapping=mapping)

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        self.update(job_id, progress=progress)

    def request_cancel(self, job_id: str) -> None:
        self.r.set(self.cancel_key(job_id), b"1", ex=self.retention_s)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.exists(self.cancel_key(job_id)))

    def count_state(self, state: str, delta: int = 1) -> None:
        self.r.hincrby(f"{self.prefix}:stats:jobs", state, delta)

    # --- idempotency --------------------------------------------------------------------
    def idempotent_job(self, owner: str, key: str, fingerprint: str, job_id: str) -> tuple[str, bool]:
        """Claim ``key`` for ``job_id``; returns (job id, created). Raises ValueError when the key
        was used before for a different request."""
        rkey = f"{self.prefix}:idem:{owner}:{key}"
        value = json.dumps({"job": job_id, "fp": fingerprint})
        if self.r.set(rkey, value, nx=True, ex=self.retention_s):
            return job_id, True
        raw = self.r.get(rkey)
        if raw is None:  # expired between the two calls: claim again
            return self.idempotent_job(owner, key, fingerprint, job_id)
        prior = json.loads(raw)
        if prior["fp"] != fingerprint:
            raise ValueError("Idempotency-Key was already used for a different request")
        return prior["job"], False

    def release_idempotency(self, owner: str, key: str) -> None:
        self.r.delete(f"{self.prefix}:idem:{owner}:{key}")


def resolve_state(record: JobRecord, rq_status: str | None) -> str:
    """The state a user sees, from our record and rq's status (None when rq forgot the job)."""
    if record.state in TERMINAL:
        return record.state
    if rq_status is None:
        return record.state
    mapping = {
        "queued": "queued",
        "deferred": "queued",
        "scheduled": "queued",
        "created": "queued",
        "started": "running",
        "finished": "finished",
        "failed": "failed",
        "stopped": "cancelled",
        "canceled": "cancelled",
    }
    return mapping.get(rq_status, record.state)


def now() -> float:
    return time.time()
