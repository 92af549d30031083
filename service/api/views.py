"""Turning job records into what the API shows (state, progress, links, result).

Presentation only: the state comes from :meth:`service.jobs.JobService.state`, and nothing here
writes to a record or to the queue.
"""

from __future__ import annotations

from fastapi import Response

from service.api.deps import Resources
from service.models import DomainInfo, ErrorInfo, JobLinks, JobOptions, JobView, Metrics, Progress
from udic_jobs import DomainPayload, JobRecord


def job_view(res: Resources, rec: JobRecord, state: str | None = None, cancel: bool | None = None) -> JobView:
    """The job as the API shows it; ``state`` and ``cancel`` (a cancel was asked) when the caller
    already knows them (then nothing is read from Redis here)."""
    if state is None:
        rec, state = res.jobs.state(rec)
    base = f"/v1/jobs/{rec.id}"
    links = JobLinks(self=base)
    is_domain_job = isinstance(rec.options, DomainPayload)
    domain = None
    if state == "finished" and is_domain_job:
        domain = DomainInfo(**rec.metrics["domain"]) if rec.metrics.get("domain") else None
        links.domain = f"/v1/domains/{domain.id}" if domain else None
    elif state == "finished":
        links.bitstream = f"/v1/bitstreams/{rec.id}"
        links.image = f"/v1/bitstreams/{rec.id}/image"
    return JobView.model_validate(
        {
            "id": rec.id,
            "state": state,
            "created_at": rec.created_at,
            "started_at": rec.started_at or None,
            "finished_at": rec.finished_at or None,
            "filename": rec.filename,
            "width": rec.width,
            "height": rec.height,
            "upload_bytes": rec.upload_bytes,
            "options": JobOptions(**rec.options.model_dump()),
            "progress": Progress(**rec.progress) if rec.progress else None,
            "metrics": Metrics(**rec.metrics) if rec.metrics and state == "finished" and not is_domain_job else None,
            "domain": domain,
            "error": ErrorInfo(**rec.error) if rec.error and state in ("failed", "queued") else None,
            "cancel_requested": res.store.cancel_requested(rec.id) if cancel is None else cancel,
            "attempts": rec.attempts,
            "callback_url": rec.callback_url or None,
            "webhook": rec.webhook or None,
            "links": links,
        }
    )


def accepted(response: Response, res: Resources, job_id: str) -> None:
    """The headers of a 202 for a queued job: where to poll, and how soon."""
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    response.headers["Retry-After"] = str(res.settings.retry_after_s)
