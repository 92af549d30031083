"""``GET /v1/jobs``: an owner's jobs, newest first, a page at a time, optionally of one state.

Why a cursor and not an offset: jobs are added at the front while a client pages, so an offset
would show some twice; the cursor is a position -- (creation time, id) of the last job shown --
and the next page starts strictly after it. Clients should treat it as opaque. It is written as
``<time>_<id>`` (:data:`CURSOR_PATTERN`) so that every string the OpenAPI pattern admits names a
position: a made-up cursor that fits the pattern lists jobs older than that, never a 422.

A state filter reads records to know their state, so one request looks at no more than
``SCAN_MAX`` jobs: when that many were looked at without filling the page, the page comes back
short with a ``next_cursor`` from where the look stopped. Records are read in batches, each in one
Redis round trip (:meth:`service.jobs.JobService.snapshots`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.core.errors import ProblemError
from service.jobs import JobService
from udic_jobs import JobRecord

SCAN_MAX = 1000
BATCH = 100
CURSOR_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,17})?_[0-9a-f]{1,64}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(created_at: float, job_id: str) -> str:
    return f"{created_at!r}_{job_id}"  # repr: the exact float the sorted set holds


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The position a cursor names (the route's pattern already refused anything else)."""
    if not _CURSOR.match(cursor):
        raise ProblemError(422, "invalid-cursor", "Invalid cursor", "pass back a next_cursor from an earlier page")
    score, _, job_id = cursor.partition("_")
    return float(score), job_id


@dataclass
class Page:
    rows: list[tuple[JobRecord, str, bool]]  # (record, state, cancel asked)
    next_cursor: str | None


def list_page(jobs: JobService, owner: str, limit: int, cursor: str | None, state: str | None) -> Page:
    """One page of the owner's jobs (see the module docstring)."""
    before = decode_cursor(cursor) if cursor else None
    rows: list[tuple[JobRecord, str, bool]] = []
    scanned = 0
    while len(rows) < limit and scanned < SCAN_MAX:
        want = min(BATCH, SCAN_MAX - scanned) if state else limit - len(rows)
        batch = jobs.store.older_ids(owner, before, want)
        if not batch:
            return Page(rows, None)
        snaps = {rec.id: (rec, st, cancel) for rec, st, cancel in jobs.snapshots([i for i, _ in batch])}
        for job_id, created in batch:
            scanned += 1
            before = (created, job_id)
            row = snaps.get(job_id)
            if row is not None and (state is None or row[1] == state):
                rows.append(row)
                if len(rows) == limit:
                    break
        if len(batch) < want and len(rows) < limit:
            return Page(rows, None)  # the owner's list ran out
    return Page(rows, encode_cursor(*before) if before else None)
