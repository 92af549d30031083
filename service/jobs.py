"""The API's side of jobs: queue policy and the state a user sees, over the job contract.

Records live in :class:`udic_jobs.JobStore`; execution is rq's. This module joins the two for the
routes: :meth:`JobService.submit` stores a record and queues its task under the service's policy
(time limit, result TTLs, retries, failure callback -- all from ``service.core.config``),
:meth:`JobService.state` reads the state a user sees, :meth:`JobService.cancel_queued` takes a job
off the queue. Routes never touch rq or Redis keys themselves.

Jobs reach rq through the fair gate (:mod:`service.fairness`): :meth:`JobService.admit` counts a new
job against its owner's limit, :meth:`JobService.submit` puts it in line behind the owner's other
jobs. :meth:`JobService.load_owned` reads a job's record, cancel flag and rq status in one Redis
round trip, so polling a job costs one (plus a throttled reap for a running job).
"""

from __future__ import annotations

import contextlib
import time

from rq import Callback, Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.timeouts import TimerDeathPenalty

from service.core.config import Settings
from service.core.errors import ProblemError
from service.core.security import ANONYMOUS
from service.fairness import FairGate
from udic_jobs import TERMINAL, JobRecord, JobStore, resolve_state
from udic_jobs.payloads import FAILURE_CALLBACK

MAX_JOB_ID = 64  # longer ids are never ours: answered 404 without asking Redis


class JobService:
    def __init__(self, store: JobStore, queue: Queue, settings: Settings, reap_interval_s: float = 1.0):
        self.store, self.queue, self.settings = store, queue, settings
        self.reap_interval_s = reap_interval_s
        self._last_reap = 0.0
        self.gate = FairGate(store, queue.connection, settings, self._enqueue)

    def admit(self, owner: str, job_id: str) -> None:
        """429 when the owner already has the most unfinished jobs allowed (before storing uploads)."""
        self.gate.admit(owner, job_id)

    def submit(self, rec: JobRecord, description: str = "") -> None:
        """Store the record, then put the job in line for the queue (admitted first if the route did
        not already). ``description`` is kept for callers; rq's is made from the record when the
        job is handed over (maybe by another API process)."""
        self.gate.admit(rec.owner, rec.id)
        self.store.create(rec)
        self.gate.submit(rec)
        self.store.count_state("created")

    def _enqueue(self, rec: JobRecord) -> None:
        """Queue the task the payload names, under the service's policy (called by the fair gate)."""
        s = self.settings
        self.queue.enqueue_call(
            rec.options.TASK,
            args=(rec.id,),
            job_id=rec.id,
            timeout=s.job_timeout_s,
            result_ttl=s.result_ttl_s,
            failure_ttl=s.failure_ttl_s,
            retry=Retry(max=s.job_retries) if s.job_retries else None,
            on_failure=Callback(FAILURE_CALLBACK),
            description=f"{rec.options.kind} {rec.filename or rec.id}",
        )

    def load_owned(self, job_id: str, owner: str) -> JobRecord:
        """The owner's record; 404 for a job that does not exist or is someone else's."""
        return self.snapshot_owned(job_id, owner)[0]

    def snapshot_owned(self, job_id: str, owner: str) -> tuple[JobRecord, str, bool]:
        """The owner's record, the state a user sees and whether a cancel was asked, from one
        Redis round trip (two more for a running job whose worker may have died: see :meth:`state`);
        404 for a job that does not exist or is someone else's."""
        snap = self.store.snapshot(job_id, Job.key_for(job_id)) if len(job_id) <= MAX_JOB_ID else (None, False, None)
        rec, cancel, status = snap
        if rec is None or (owner != ANONYMOUS and rec.owner != owner):
            raise ProblemError(404, "job-not-found", "Job not found", f"no job {job_id!r} for this API key")
        if status == "started" and rec.state not in TERMINAL and self.reap_abandoned():
            rec, cancel, status = self._reread(rec)
        return rec, resolve_state(rec, status), cancel

    def _reread(self, rec: JobRecord) -> tuple[JobRecord, bool, str | None]:
        again, cancel, status = self.store.snapshot(rec.id, Job.key_for(rec.id))
        return again or rec, cancel, status

    def snapshots(self, ids: list[str]) -> list[tuple[JobRecord, str, bool]]:
        """(record, state, cancel asked) of many jobs in one round trip (expired ones left out)."""
        rows = self.store.snapshots(ids, Job.key_for("{id}"))
        return [(rec, resolve_state(rec, status), cancel) for rec, cancel, status in rows]

    def reap_abandoned(self) -> bool:
        """Let rq retry or fail jobs whose worker stopped heartbeating (throttled); True if it ran."""
        now = time.monotonic()
        if now - self._last_reap < self.reap_interval_s:
            return False
        self._last_reap = now
        # rq's default SIGALRM timeout for the failure callback only works in the main thread;
        # routes run in worker threads, so the registry gets the timer-based one
        StartedJobRegistry(queue=self.queue, death_penalty_class=TimerDeathPenalty).cleanup()
        return True

    def state(self, rec: JobRecord) -> tuple[JobRecord, str]:
        """The state a user sees, and the record to show with it: for a running job, abandoned jobs
        are reaped first and the record is read again, since the worker may have just written it."""
        if rec.state in TERMINAL:
            return rec, rec.state
        rec, _, status = self._reread(rec)
        if status == "started" and rec.state not in TERMINAL and self.reap_abandoned():
            rec, _, status = self._reread(rec)
        return rec, resolve_state(rec, status)

    def cancel_queued(self, rec: JobRecord) -> JobRecord:
        """Take a job that has not started off the queue; returns its record as now stored."""
        with contextlib.suppress(NoSuchJobError):
            Job.fetch(rec.id, connection=self.queue.connection).cancel()
        self.store.mark_cancelled(rec.id)
        self.gate.withdraw(rec)
        return self.store.get(rec.id) or rec
