"""The API's side of jobs: queue policy and the state a user sees, over the job contract.

Records live in :class:`udic_jobs.JobStore`; execution is rq's. This module joins the two for the
routes: :meth:`JobService.submit` stores a record and queues its task under the service's policy
(time limit, result TTLs, retries, failure callback -- all from ``service.core.config``),
:meth:`JobService.state` reads the state a user sees, :meth:`JobService.cancel_queued` takes a job
off the queue. Routes never touch rq or Redis keys themselves.
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
from udic_jobs import TERMINAL, JobRecord, JobStore, resolve_state
from udic_jobs.payloads import FAILURE_CALLBACK

MAX_JOB_ID = 64  # longer ids are never ours: answered 404 without asking Redis


class JobService:
    def __init__(self, store: JobStore, queue: Queue, settings: Settings, reap_interval_s: float = 1.0):
        self.store, self.queue, self.settings = store, queue, settings
        self.reap_interval_s = reap_interval_s
        self._last_reap = 0.0

    def submit(self, rec: JobRecord, description: str) -> None:
        """Store the record, then queue the task its payload names."""
        s = self.settings
        self.store.create(rec)
        self.queue.enqueue_call(
            rec.options.TASK,
            args=(rec.id,),
            job_id=rec.id,
            timeout=s.job_timeout_s,
            result_ttl=s.result_ttl_s,
            failure_ttl=s.failure_ttl_s,
            retry=Retry(max=s.job_retries) if s.job_retries else None,
            on_failure=Callback(FAILURE_CALLBACK),
            description=description,
        )
        self.store.count_state("created")

    def load_owned(self, job_id: str, owner: str) -> JobRecord:
        """The owner's record; 404 for a job that does not exist or is someone else's."""
        rec = self.store.get(job_id) if len(job_id) <= MAX_JOB_ID else None
        if rec is None or (owner != ANONYMOUS and rec.owner != owner):
            raise ProblemError(404, "job-not-found", "Job not found", f"no job {job_id!r} for this API key")
        return rec

    def rq_status(self, job_id: str) -> str | None:
        try:
            status = Job.fetch(job_id, connection=self.queue.connection).get_status(refresh=True)
        except NoSuchJobError:
            return None
        # JobStatus is a str Enum: str() would give "JobStatus.STARTED", the value is "started"
        return None if status is None else str(getattr(status, "value", status))

    def reap_abandoned(self) -> None:
        """Let rq retry or fail jobs whose worker stopped heartbeating (throttled)."""
        now = time.monotonic()
        if now - self._last_reap >= self.reap_interval_s:
            self._last_reap = now
            # rq's default SIGALRM timeout for the failure callback only works in the main thread;
            # routes run in worker threads, so the registry gets the timer-based one
            StartedJobRegistry(queue=self.queue, death_penalty_class=TimerDeathPenalty).cleanup()

    def state(self, rec: JobRecord) -> tuple[JobRecord, str]:
        """The state a user sees, and the record to show with it: for a running job, abandoned jobs
        are reaped first and the record is read again, since the worker may have just written it."""
        if rec.state in TERMINAL:
            return rec, rec.state
        status = self.rq_status(rec.id)
        if status == "started":
            self.reap_abandoned()
            rec = self.store.get(rec.id) or rec
            status = self.rq_status(rec.id)
        return rec, resolve_state(rec, status)

    def cancel_queued(self, rec: JobRecord) -> JobRecord:
        """Take a job that has not started off the queue; returns its record as now stored."""
        with contextlib.suppress(NoSuchJobError):
            Job.fetch(rec.id, connection=self.queue.connection).cancel()
        self.store.mark_cancelled(rec.id)
        return self.store.get(rec.id) or rec
