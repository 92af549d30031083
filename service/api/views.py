"""Turning job records into what the API shows (state, progress, links)."""

from __future__ import annotations

import time

from fastapi import Response
from rq import Callback, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.timeouts import TimerDeathPenalty

from service.api.deps import Resources
from service.core.errors import ProblemError
from service.core.security import ANONYMOUS
from service.jobs import TERMINAL, JobRecord, resolve_state
from service.models import DomainInfo, ErrorInfo, JobLinks, JobOptions, JobView, Metrics, Progress

_last_cleanup = [0.0]


def rq_status(res: Resources, job_id: str) -> str | None:
    try:
        status = Job.fetch(job_id, connection=res.redis).get_status(refresh=True)
    except NoSuchJobError:
        return None
    # JobStatus is a str Enum: str() would give "JobStatus.STARTED", the value is "started"
    return None if status is None else str(getattr(status, "value", status))


def reap_abandoned(res: Resources, min_interval_s: float = 1.0) -> None:
    """Let rq retry or fail jobs whose worker stopped heartbeating (throttled per process)."""
    now = time.monotonic()
    if now - _last_cleanup[0] >= min_interval_s:
        _last_cleanup[0] = now
        # rq's default SIGALRM timeout for the failure callback only works in the main thread;
        # routes run in worker threads, so the registry gets the timer-based one
        StartedJobRegistry(queue=res.queue, death_penalty_class=TimerDeathPenalty).cleanup()


def load_owned(res: Resources, job_id: str, owner: str) -> JobRecord:
    rec = res.store.get(job_id) if len(job_id) <= 64 else None
    if rec is None or (owner != ANONYMOUS and rec.owner != owner):
        raise ProblemError(404, "job-not-found", "Job not found", f"no job {job_id!r} for this API key")
    return rec


def current_state(res: Resources, rec: JobRecord) -> str:
    if rec.state in TERMINAL:
        return rec.state
    status = rq_status(res, rec.id)
    if status == "started":
        reap_abandoned(res)
        fresh = res.store.get(rec.id)
        if fresh is not None:
            rec.__dict__.update(fresh.__dict__)
        status = rq_status(res, rec.id)
    return resolve_state(rec, status)


def job_view(res: Resources, rec: JobRecord, state: str | None = None) -> JobView:
    state = state or current_state(res, rec)
    base = f"/v1/jobs/{rec.id}"
    links = JobLinks(self=base)
    is_domain_job = rec.options.get("kind") == "domain"
    domain = None
    if state == "finished" and is_domain_job:
        domain = DomainInfo(**rec.metrics["domain"]) if rec.metrics.get("domain") else None
        links.domain = f"/v1/domains/{domain.id}" if domain else None
    elif state == "finished":
        links.bitstream = f"/v1/bitstreams/{rec.id}"
        links.image = f"/v1/bitstreams/{rec.id}/image"
    return JobView(
        id=rec.id,
        state=state,  # type: ignore[arg-type]
        created_at=rec.created_at,
        started_at=rec.started_at or None,
        finished_at=rec.finished_at or None,
        filename=rec.filename,
        width=rec.width,
        height=rec.height,
        upload_bytes=rec.upload_bytes,
        options=JobOptions(**rec.options),
        progress=Progress(**rec.progress) if rec.progress else None,
        metrics=Metrics(**rec.metrics) if rec.metrics and state == "finished" and not is_domain_job else None,
        domain=domain,
        error=ErrorInfo(**rec.error) if rec.error and state in ("failed", "queued") else None,
        cancel_requested=res.store.cancel_requested(rec.id),
        attempts=rec.attempts,
        links=links,
    )


def enqueue(res: Resources, rec: JobRecord, func: str, description: str, response: Response) -> None:
    """Queue a job for its record, with the service's job policy, and answer 202-style headers."""
    s = res.settings
    res.store.create(rec)
    res.queue.enqueue_call(
        func,
        args=(rec.id,),
        job_id=rec.id,
        timeout=s.job_timeout_s,
        result_ttl=s.result_ttl_s,
        failure_ttl=s.failure_ttl_s,
        retry=Retry(max=s.job_retries) if s.job_retries else None,
        on_failure=Callback("worker.tasks.on_job_failure"),
        description=description,
    )
    res.store.count_state("created")
    response.headers["Location"] = f"/v1/jobs/{rec.id}"
    response.headers["Retry-After"] = str(s.retry_after_s)
