"""Encode jobs: submit (multipart upload), poll, list, cancel."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Header, Query, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from rq.exceptions import NoSuchJobError
from rq.job import Job

from codec.domains.store import UnknownDomainError
from codec.imageio import ImageInputError, load_image
from codec.zoo import ModelError
from service.api.deps import Resources, resources
from service.api.views import current_state, enqueue, job_view, load_owned
from service.core.errors import ProblemError
from service.core.security import ANONYMOUS, current_owner
from service.decoding import registry
from service.jobs import TERMINAL, JobRecord, new_job_id, now
from service.models import ADAPTATIONS, JobList, JobOptions, JobView

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
log = logging.getLogger("udic.api")


def validate_image(data: bytes, max_pixels: int) -> tuple[int, int]:
    if not data:
        raise ProblemError(422, "invalid-image", "Empty upload", "the uploaded file has no bytes")
    try:
        img = load_image(data, max_pixels=max_pixels)
    except ImageInputError as exc:
        title = "Image too large" if exc.kind == "image-too-large" else "Not a usable image"
        raise ProblemError(422, exc.kind, title, str(exc)) from None
    return img.width, img.height


def _validate_options(opts: JobOptions) -> None:
    try:
        base, _ = registry().resolve(opts.model, opts.quality, opts.lmbda)
        if opts.adaptation != "none" and not base.variable_rate:
            raise ModelError(f"adaptation works with the variable-rate models (like 'default'), not {opts.model}")
    except ModelError as exc:
        raise ProblemError(422, exc.kind, "Invalid encode options", str(exc)) from None


@router.post("", status_code=202, response_model=JobView, summary="Upload an image and queue its encode")
async def create_job(
    response: Response,
    file: Annotated[UploadFile, File(description="the image (PNG, JPEG, WebP, TIFF, BMP, ...)")],
    model: Annotated[str, Form()] = "default",
    quality: Annotated[float | None, Form()] = None,
    lmbda: Annotated[float | None, Form(alias="lambda")] = None,
    adaptation: Annotated[str, Form()] = "none",
    time_budget_s: Annotated[float | None, Form(gt=0)] = None,
    domain: Annotated[str | None, Form(description="a domain adapter id, or 'auto'")] = None,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    owner: str = Depends(current_owner),
    res: Resources = Depends(resources),
) -> JobView:
    if quality is not None and lmbda is not None:
        raise ProblemError(422, "invalid-quality", "Invalid encode options", "give quality or lambda, not both")
    if adaptation not in ADAPTATIONS:
        raise ProblemError(
            422,
            "invalid-options",
            "Invalid encode options",
            f"unknown adaptation preset {adaptation!r}; available: {', '.join(ADAPTATIONS)}",
        )
    opts = JobOptions(
        model=model,
        quality=quality,
        lmbda=lmbda,
        adaptation=adaptation,  # type: ignore[arg-type]
        time_budget_s=time_budget_s,
        domain=domain or None,
    )
    if opts.domain not in (None, "auto"):
        try:
            rec_d = await run_in_threadpool(registry().domains.get, opts.domain)
        except UnknownDomainError:
            rec_d = None
        if rec_d is None or (owner != ANONYMOUS and rec_d.owner != owner):
            raise ProblemError(422, "unknown-domain", "Invalid encode options", f"no domain adapter {opts.domain!r}")
    data = await file.read()
    await run_in_threadpool(_validate_options, opts)
    width, height = await run_in_threadpool(validate_image, data, res.settings.max_pixels)

    job_id = new_job_id()
    if idempotency_key:
        fingerprint = hashlib.sha256(data + json.dumps(opts.model_dump(), sort_keys=True).encode()).hexdigest()
        try:
            existing, created = res.store.idempotent_job(owner, idempotency_key, fingerprint, job_id)
        except ValueError as exc:
            raise ProblemError(409, "idempotency-key-reused", "Idempotency-Key reused", str(exc)) from None
        if not created:
            rec = res.store.get(existing)
            if rec is not None:
                response.status_code = 200
                response.headers["Location"] = f"/v1/jobs/{existing}"
                return job_view(res, rec)
            job_id = existing  # claimed by a request that did not get as far as creating the job

    upload_key = f"uploads/{job_id}"
    await run_in_threadpool(res.storage.put, upload_key, data)
    rec = JobRecord(
        id=job_id,
        owner=owner,
        state="queued",
        created_at=now(),
        options=opts.model_dump(),
        filename=(file.filename or "")[:255],
        upload_key=upload_key,
        upload_bytes=len(data),
        width=width,
        height=height,
    )
    enqueue(res, rec, "worker.tasks.encode_job", f"encode {rec.filename or job_id}", response)
    log.info(
        "job queued",
        extra={
            "job_id": job_id,
            "owner": owner,
            "bytes": len(data),
            "size": f"{width}x{height}",
            "options": opts.model_dump(),
        },
    )
    return job_view(res, rec, "queued")


@router.get("", response_model=JobList, summary="Your recent jobs, newest first")
def list_jobs(
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    owner: str = Depends(current_owner),
    res: Resources = Depends(resources),
) -> JobList:
    ids = res.redis.zrevrange(f"{res.settings.key_prefix}:jobs:{owner}", 0, limit - 1)
    views = []
    for raw in ids:
        rec = res.store.get(raw.decode())
        if rec is not None:
            views.append(job_view(res, rec))
    return JobList(jobs=views)


@router.get("/{job_id}", response_model=JobView, summary="State, progress and results of a job")
def get_job(
    job_id: str, response: Response, owner: str = Depends(current_owner), res: Resources = Depends(resources)
) -> JobView:
    rec = load_owned(res, job_id, owner)
    view = job_view(res, rec)
    if view.state not in TERMINAL:
        response.headers["Retry-After"] = str(res.settings.retry_after_s)
    return view


@router.delete("/{job_id}", response_model=JobView, summary="Cancel a queued or running job")
def cancel_job(
    job_id: str, response: Response, owner: str = Depends(current_owner), res: Resources = Depends(resources)
) -> JobView:
    rec = load_owned(res, job_id, owner)
    state = current_state(res, rec)
    if state == "cancelled":
        return job_view(res, rec, state)
    if state in TERMINAL:
        raise ProblemError(
            409,
            "job-not-cancellable",
            "Job already ended",
            f"the job is {state}; only queued or running jobs can be cancelled",
            state=state,
        )
    res.store.request_cancel(job_id)
    if state == "queued":
        with contextlib.suppress(NoSuchJobError):
            Job.fetch(job_id, connection=res.redis).cancel()
        res.store.update(job_id, state="cancelled", finished_at=time.time())
        res.store.count_state("cancelled")
        res.storage.delete(rec.upload_key)
        log.info("job cancelled", extra={"job_id": job_id, "owner": owner, "while": "queued"})
        fresh = res.store.get(job_id) or rec
        return job_view(res, fresh, "cancelled")
    # running: the worker stops at its next progress check
    log.info("job cancel requested", extra={"job_id": job_id, "owner": owner, "while": "running"})
    response.status_code = 202
    return job_view(res, rec, state)
