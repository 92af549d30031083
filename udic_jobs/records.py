"""A job's record, and the one place that decides the state a user sees.

A record holds what the user asked for (the payload) and what happened: owner, file name,
progress, metrics, error, and our own ``state``. rq holds the queue and the execution. The state
a user sees combines the two (:func:`resolve_state`): rq knows whether a job is queued or running,
the record knows whether it was cancelled and why it failed.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

from udic_jobs.payloads import JobPayload, parse_payload
from udic_jobs.storage.keys import upload_key

STATES = ("queued", "running", "finished", "failed", "cancelled")
TERMINAL = frozenset({"finished", "failed", "cancelled"})
# fields stored as JSON in the Redis hash (the others as str)
JSON_FIELDS = ("options", "progress", "metrics", "error", "webhook")
P = TypeVar("P", bound=JobPayload)


def new_job_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


def encode_field(name: str, value: Any) -> str:
    """One record field as stored in the hash (payload models as their JSON dict)."""
    if name == "options" and not isinstance(value, dict):
        value = value.model_dump()
    return json.dumps(value) if name in JSON_FIELDS else str(value)


@dataclass
class JobRecord:
    id: str
    owner: str
    state: str
    created_at: float
    options: JobPayload
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
    #: where the terminal-state event is POSTed (service/webhooks.py), and what became of it
    callback_url: str = ""
    webhook: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def queued(cls, job_id: str, owner: str, options: JobPayload, **fields: Any) -> JobRecord:
        """A new job's record as the API stores it when it queues the job (its upload under
        :func:`~udic_jobs.storage.upload_key`)."""
        return cls(job_id, owner, "queued", now(), options, upload_key=upload_key(job_id), **fields)

    def payload(self, kind: type[P]) -> P:
        """The payload as the model a task expects; TypeError when the job is of another kind."""
        if not isinstance(self.options, kind):
            raise TypeError(f"job {self.id} is a {self.options.kind} job, not {kind.__name__}")
        return self.options

    def to_redis(self) -> dict[str, str]:
        return {k: encode_field(k, v) for k, v in vars(self).items()}

    @classmethod
    def from_redis(cls, raw: dict[bytes, bytes]) -> JobRecord:
        d = {k.decode(): v.decode() for k, v in raw.items()}
        kw: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            if name not in d:
                continue
            v = d[name]
            if name == "options":
                kw[name] = parse_payload(json.loads(v))
            elif name in JSON_FIELDS:
                kw[name] = json.loads(v)
            elif f.type == "float":
                kw[name] = float(v)
            elif f.type == "int":
                kw[name] = int(float(v))
            else:
                kw[name] = v
        return cls(**kw)


def resolve_state(record: JobRecord, rq_status: str | None) -> str:
    """The state a user sees, from our record and rq's status (None when rq forgot the job)."""
    if record.state in TERMINAL:
        return record.state
    if rq_status is None:
        return record.state
    if rq_status == "started" and record.started_at == 0.0:
        # rq marks a job started a moment before our task records its start: "running" without a
        # ``started_at`` would be a state the API cannot describe (seen by tests/e2e/test_fair_use.py)
        return "queued"
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
