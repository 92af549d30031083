"""Encode jobs: submit (multipart upload), poll, list (paged, by state), cancel."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Query, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from codec.adaptation.backends import is_adaptable
from codec.domains.store import UnknownDomainError
from codec.rate_control import InvalidTargetError, RateTarget
from codec.zoo import ModelError
from codec.zoo.context_models import coding_notice
from service.api.deps import OwnerDep, Resources, ResourcesDep
from service.api.encode_options import with_roi
from service.api.problems import problems
from service.api.uploads import validate_image
from service.api.views import accepted, job_view
from service.core.errors import ProblemError
from service.core.model_registry import registry
from service.core.security import ANONYMOUS
from service.job_listing import CURSOR_PATTERN, list_page
from service.models import ADAPTATIONS, JobList, JobState, JobView
from service.webhooks import checked_callback
from udic_jobs import TERMINAL, EncodePayload, JobRecord, new_job_id
from udic_jobs.storage import input_keys, upload_key

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
log = logging.getLogger("udic.api")


def _payload(
    model: str, quality: float | None, lmbda: float | None, adaptation: str, budget: float | None, domain: str | None
) -> EncodePayload:
    """The encode job's payload from the form; 422 for options that cannot go together."""
    if quality is not None and lmbda is not None:
        raise ProblemError(422, "invalid-quality", "Invalid encode options", "give quality or lambda, not both")
    if adaptation not in ADAPTATIONS:
        raise ProblemError(
            422,
            "invalid-options",
            "Invalid encode options",
            f"unknown adaptation preset {adaptation!r}; available: {', '.join(ADAPTATIONS)}",
        )
    return EncodePayload(
        model=model, quality=quality, lmbda=lmbda, adaptation=adaptation, time_budget_s=budget, domain=domain or None
    )


def _with_target(
    opts: EncodePayload, target_bytes: int | None, target_bpp: float | None, target_psnr: float | None
) -> EncodePayload:
    """The payload with its rate target (``codec.rate_control``); 422 for a target no image could
    meet, more than one target, or a target together with a quality or lambda."""
    try:
        target = RateTarget.from_options(target_bytes, target_bpp, target_psnr)
    except InvalidTargetError as exc:
        raise ProblemError(422, exc.kind, "Invalid encode options", str(exc)) from None
    if target is None:
        return opts
    if opts.quality is not None or opts.lmbda is not None:
        raise ProblemError(422, "invalid-target", "Invalid encode options", "give a target or quality/lambda, not both")
    return opts.model_copy(update={"target_bytes": target_bytes, "target_bpp": target_bpp, "target_psnr": target_psnr})


def _check_payload(opts: EncodePayload, owner: str) -> str | None:
    """422 unless the domain adapter is the owner's and the model takes the options (loads models:
    run it in a thread). Returns what to tell the user up front about the model (a slow serial
    context model), or None."""
    if opts.domain not in (None, "auto"):
        try:
            rec_d = registry().domains.get(opts.domain)
        except UnknownDomainError:
            rec_d = None
        if rec_d is None or (owner != ANONYMOUS and rec_d.owner != owner):
            raise ProblemError(422, "unknown-domain", "Invalid encode options", f"no domain adapter {opts.domain!r}")
    try:
        base, level = registry().resolve(opts.model, opts.quality, opts.lmbda)
        if opts.adaptation != "none" and not is_adaptable(base.net):
            raise ModelError(
                f"adaptation works with the variable-rate models (like 'default'), wacnn and the "
                f"bmshj2018-hyperprior / mbt2018-mean / mbt2018 / cheng2020 architectures, not {opts.model}"
            )
        if opts.adaptation != "none" and not base.lmbda_at(level) > 0:
            raise ModelError(f"model {opts.model} has no training lambda to adapt for")
        targeted = (opts.target_bytes, opts.target_bpp, opts.target_psnr) != (None, None, None)
        if targeted and not base.variable_rate:
            raise InvalidTargetError(f"a target needs a variable-rate model (like 'default'), not {opts.model}")
    except ModelError as exc:
        raise ProblemError(422, exc.kind, "Invalid encode options", str(exc)) from None
    return coding_notice(base.net)


def _claim_key(res: Resources, owner: str, key: str, data: bytes, opts: EncodePayload) -> tuple[str, JobRecord | None]:
    """The job id to create under an Idempotency-Key, or the job an earlier identical request made
    (409 when the key was used for a different request)."""
    fingerprint = hashlib.sha256(data + json.dumps(opts.model_dump(), sort_keys=True).encode()).hexdigest()
    try:
        job_id, created = res.store.idempotent_job(owner, key, fingerprint, new_job_id())
    except ValueError as exc:
        raise ProblemError(409, "idempotency-key-reused", "Idempotency-Key reused", str(exc)) from None
    # not created and no record: claimed by a request that did not get as far as creating the job
    return job_id, None if created else res.store.get(job_id)


@router.post(
    "",
    status_code=202,
    response_model=JobView,
    summary="Upload an image and queue its encode",
    responses={
        200: {"model": JobView, "description": "the job an earlier request with this Idempotency-Key made"},
        **problems(409, 429, s409="Idempotency-Key reused for a different request"),
    },
)
async def create_job(
    response: Response,
    file: Annotated[
        UploadFile,
        File(description="the image (PNG, JPEG, WebP, TIFF, BMP, ...); not empty", json_schema_extra={"minLength": 1}),
    ],
    owner: OwnerDep,
    res: ResourcesDep,
    model: Annotated[str, Form()] = "default",
    quality: Annotated[float | None, Form()] = None,
    lmbda: Annotated[float | None, Form(alias="lambda")] = None,
    adaptation: Annotated[str, Form()] = "none",
    time_budget_s: Annotated[float | None, Form(gt=0)] = None,
    domain: Annotated[str | None, Form(description="a domain adapter id, or 'auto'")] = None,
    target_bytes: Annotated[int | None, Form(gt=0, description="a file size to reach instead of a quality")] = None,
    target_bpp: Annotated[float | None, Form(gt=0, description="bits per pixel to reach instead of a quality")] = None,
    target_psnr: Annotated[float | None, Form(description="a PSNR (dB) to reach at least, not a quality")] = None,
    roi: Annotated[str | None, Form(description="'auto': favour text-like and detailed regions")] = None,
    roi_rects: Annotated[
        str | None, Form(max_length=20000, description='JSON list of {"x", "y", "w", "h", "weight"}')
    ] = None,
    roi_mask: Annotated[UploadFile | None, File(description="PNG of the image's size: grey value = weight")] = None,
    callback_url: Annotated[
        str | None, Form(max_length=2000, description="http(s) URL that gets a signed POST when the job ends")
    ] = None,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobView:
    opts = _payload(model, quality, lmbda, adaptation, time_budget_s, domain)
    opts = _with_target(opts, target_bytes, target_bpp, target_psnr)
    data = await file.read()
    notice = await run_in_threadpool(_check_payload, opts, owner)
    callback = await run_in_threadpool(checked_callback, res.settings, callback_url)  # resolves DNS
    width, height = await run_in_threadpool(validate_image, data, res.settings.max_pixels)
    mask = await roi_mask.read() if roi_mask is not None else None
    opts = await run_in_threadpool(with_roi, opts, roi, roi_rects, mask, width, height)
    job_id, prior = _claim_key(res, owner, idempotency_key, data, opts) if idempotency_key else (new_job_id(), None)
    if prior is not None:
        response.status_code = 200
        response.headers["Location"] = f"/v1/jobs/{prior.id}"
        return job_view(res, prior).model_copy(update={"notice": notice})
    await run_in_threadpool(res.jobs.admit, owner, job_id)  # 429 before the upload is stored
    await run_in_threadpool(res.storage.put, upload_key(job_id), data)
    filename = (file.filename or "")[:255]
    dims = {"upload_bytes": len(data), "width": width, "height": height}
    rec = JobRecord.queued(job_id, owner, opts, filename=filename, callback_url=callback, **dims)
    res.jobs.submit(rec, f"encode {rec.filename or job_id}")
    accepted(response, res, job_id)
    size = f"{width}x{height}"
    log.info(
        "job queued",
        extra={"job_id": job_id, "owner": owner, "bytes": len(data), "size": size, "options": opts.model_dump()},
    )
    return job_view(res, rec, "queued").model_copy(update={"notice": notice})


@router.get("", response_model=JobList, summary="Your jobs, newest first, a page at a time")
def list_jobs(
    owner: OwnerDep,
    res: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page (opaque)")
    ] = None,
    state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
) -> JobList:
    page = list_page(res.jobs, owner, limit, cursor, state)
    return JobList(jobs=[job_view(res, rec, st, cancel) for rec, st, cancel in page.rows], next_cursor=page.next_cursor)


@router.get("/{job_id}", response_model=JobView, summary="State, progress and results of a job")
async def get_job(job_id: str, owner: OwnerDep, res: ResourcesDep) -> Response:
    """The polling route, kept cheap: async (its one Redis round trip, a local pipeline, runs on the
    event loop instead of a thread-pool hop), and the view is serialised once, not validated again
    against ``response_model`` (which only documents it here)."""
    rec, state, cancel = res.jobs.snapshot_owned(job_id, owner)
    headers = {} if state in TERMINAL else {"Retry-After": str(res.settings.retry_after_s)}
    return Response(job_view(res, rec, state, cancel).model_dump_json(), media_type="application/json", headers=headers)


@router.delete(
    "/{job_id}",
    response_model=JobView,
    summary="Cancel a queued or running job",
    responses={
        202: {"model": JobView, "description": "the job is running: it stops at its next progress check"},
        **problems(409, s409="the job already ended"),
    },
)
def cancel_job(job_id: str, response: Response, owner: OwnerDep, res: ResourcesDep) -> JobView:
    rec, state = res.jobs.state(res.jobs.load_owned(job_id, owner))
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
        rec = res.jobs.cancel_queued(rec)
        for key in input_keys(job_id, rec.options):
            res.storage.delete(key)
        log.info("job cancelled", extra={"job_id": job_id, "owner": owner, "while": "queued"})
        return job_view(res, rec, "cancelled")
    # running: the worker stops at its next progress check
    log.info("job cancel requested", extra={"job_id": job_id, "owner": owner, "while": "running"})
    response.status_code = 202
    return job_view(res, rec, state)
