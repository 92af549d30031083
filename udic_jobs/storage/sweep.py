"""The periodic sweep: each expiring kind of blob deleted when its lifetime is over, each deletion logged.

- uploads: as soon as their job has ended (finished, failed, cancelled) or its record is gone --
  normally the worker has already deleted them; this catches a queued job cancelled by the API, a
  worker that died, an API that stored an upload and crashed before queueing. An upload with no
  record is left alone for ``UPLOAD_GRACE_S`` (the API stores it just before the record).
- bitstreams and domain refs: after the retention.
- domain adapters: never (they live until ``DELETE /v1/domains/{id}``); the sweep does not even list them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from udic_jobs.records import TERMINAL
from udic_jobs.storage.base import BlobInfo, Storage
from udic_jobs.storage.keys import EXPIRING, UPLOADS, job_of_upload

log = logging.getLogger("udic.storage")
UPLOAD_GRACE_S = 600.0


@dataclass
class SweepReport:
    deleted: list[str] = field(default_factory=list)
    kept: int = 0


def _reason(blob: BlobInfo, now: float, retention_s: float, job_state: Callable[[str], str | None]) -> str | None:
    """Why ``blob`` is to be deleted now, or None to keep it."""
    age = now - blob.modified
    if age > retention_s:
        return "retention"
    if blob.key.startswith(UPLOADS):
        state = job_state(job_of_upload(blob.key))
        if state in TERMINAL:
            return f"job {state}"
        if state is None and age > UPLOAD_GRACE_S:
            return "job record gone"
    return None


def sweep(
    storage: Storage, retention_s: float, job_state: Callable[[str], str | None], now: float | None = None
) -> SweepReport:
    """Delete what has outlived its kind's lifetime (see the module's docstring); log every deletion."""
    now = time.time() if now is None else now
    report = SweepReport()
    states: dict[str, str | None] = {}

    def cached_state(job_id: str) -> str | None:
        if job_id not in states:
            states[job_id] = job_state(job_id)
        return states[job_id]

    for kind in EXPIRING:
        for blob in list(storage.list(kind)):
            reason = _reason(blob, now, retention_s, cached_state)
            if reason is None:
                report.kept += 1
                continue
            storage.delete(blob.key)
            report.deleted.append(blob.key)
            log.info(
                "swept",
                extra={"key": blob.key, "reason": reason, "age_s": round(now - blob.modified), "bytes": blob.size},
            )
    return report
