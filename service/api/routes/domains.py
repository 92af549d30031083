"""Domain adapters: train one from sample images (a job), list them, look one up, delete one.

Adapters live until deleted. ``DELETE`` refuses (409 ``domain-in-use``) while unexpired bitstreams
were coded with the adapter -- they could not be decoded without it -- and says until when; the
refs that record this are written by the worker next to each bitstream (:mod:`udic_jobs.storage.refs`).
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from codec.domains.store import UnknownDomainError
from service.api.deps import OwnerDep, ResourcesDep
from service.api.problems import problems
from service.api.uploads import validate_image
from service.api.views import accepted, job_view
from service.core.errors import ProblemError
from service.core.model_registry import registry
from service.core.security import ANONYMOUS
from service.models import DomainInfo, DomainList, JobView
from service.webhooks import checked_callback
from udic_jobs import DomainPayload, JobRecord, new_job_id
from udic_jobs.storage import sample_key
from udic_jobs.storage.refs import domain_use, drop_refs

router = APIRouter(prefix="/v1/domains", tags=["domains"])
log = logging.getLogger("udic.api")
MIN_SAMPLES, MAX_SAMPLES = 5, 25


def _check_base_model(model: str) -> None:
    """422 unless ``model`` loads and is variable-rate (loads models: run it in a thread)."""
    try:
        base = registry().get(model)
    except Exception as exc:  # ModelError family
        raise ProblemError(422, getattr(exc, "kind", "unknown-model"), "Invalid model", str(exc)) from None
    if not base.variable_rate:
        raise ProblemError(422, "invalid-options", "Invalid model", "domain adapters need a variable-rate model")


def _check_count(n: int) -> None:
    if not MIN_SAMPLES <= n <= MAX_SAMPLES:
        raise ProblemError(
            422, "invalid-samples", "Wrong number of sample images", f"send {MIN_SAMPLES}-{MAX_SAMPLES} images, got {n}"
        )


async def _read_samples(files: list[UploadFile], max_pixels: int) -> list[bytes]:
    """Every sample's bytes, each checked before anything is stored (422 names the bad one)."""
    samples = [await f.read() for f in files]
    for i, data in enumerate(samples):
        try:
            await run_in_threadpool(validate_image, data, max_pixels)
        except ProblemError as exc:
            exc.detail = f"sample {i + 1} ({files[i].filename or 'unnamed'}): {exc.detail}"
            raise
    return samples


@router.post(
    "",
    status_code=202,
    response_model=JobView,
    summary="Train a domain adapter from 5-25 sample images",
    responses=problems(429),  # the owner's limit of unfinished jobs, with or without API keys
)
async def create_domain(
    response: Response,
    files: Annotated[
        list[UploadFile],
        File(
            description=f"{MIN_SAMPLES}-{MAX_SAMPLES} sample images of the domain",
            json_schema_extra={"minItems": MIN_SAMPLES, "maxItems": MAX_SAMPLES},
        ),
    ],
    name: Annotated[str, Form(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")],
    owner: OwnerDep,
    res: ResourcesDep,
    model: Annotated[str, Form()] = "default",
    steps: Annotated[int, Form(ge=1, le=20000)] = 2000,
    stage2_steps: Annotated[int, Form(ge=0, le=5000)] = 500,
    time_budget_s: Annotated[float | None, Form(gt=0)] = None,
    callback_url: Annotated[
        str | None, Form(max_length=2000, description="http(s) URL that gets a signed POST when training ends")
    ] = None,
) -> JobView:
    _check_count(len(files))
    await run_in_threadpool(_check_base_model, model)
    callback = await run_in_threadpool(checked_callback, res.settings, callback_url)
    samples = await _read_samples(files, res.settings.max_pixels)
    job_id = new_job_id()
    for i, data in enumerate(samples):
        await run_in_threadpool(res.storage.put, sample_key(job_id, i), data)
    payload = DomainPayload(
        model=model,
        domain_name=name,
        steps=steps,
        stage2_steps=stage2_steps,
        time_budget_s=time_budget_s,
        samples=len(samples),
    )
    upload_bytes = sum(len(data) for data in samples)
    rec = JobRecord.queued(
        job_id, owner, payload, filename=f"{len(files)} samples", upload_bytes=upload_bytes, callback_url=callback
    )
    res.jobs.submit(rec, f"train domain {name}")
    accepted(response, res, job_id)
    log.info(
        "domain training queued", extra={"job_id": job_id, "owner": owner, "domain_name": name, "samples": len(files)}
    )
    return job_view(res, rec, "queued")


def _visible(owner: str, rec_owner: str) -> bool:
    return owner in (ANONYMOUS, rec_owner)


@router.get("", response_model=DomainList, summary="Your domain adapters, with their measured gains")
def list_domains(owner: OwnerDep) -> DomainList:
    recs = registry().domains.list()
    return DomainList(domains=[DomainInfo(**r.summary()) for r in recs if _visible(owner, r.owner)])


@router.get("/{domain_id}", response_model=DomainInfo, summary="One domain adapter")
def get_domain(domain_id: str, owner: OwnerDep) -> DomainInfo:
    try:
        rec = registry().domains.get(domain_id)
    except UnknownDomainError:
        rec = None
    if rec is None or not _visible(owner, rec.owner):
        raise ProblemError(404, "domain-not-found", "Domain adapter not found", f"no domain adapter {domain_id!r}")
    return DomainInfo(**rec.summary())


def _in_use_problem(domain_id: str, n: int, until: float) -> ProblemError:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))
    return ProblemError(
        409,
        "domain-in-use",
        "Domain adapter in use",
        f"{n} stored bitstream(s) coded with {domain_id} would stop decoding; they expire by {when} "
        "(the retention), after which it can be deleted",
        bitstreams=n,
        in_use_until=when,
    )


@router.delete(
    "/{domain_id}",
    status_code=204,
    response_class=Response,
    responses={409: {"content": {"application/problem+json": {}}, "description": "domain-in-use"}},
    summary="Delete a domain adapter (refused while unexpired bitstreams need it)",
)
def delete_domain(domain_id: str, owner: OwnerDep, res: ResourcesDep) -> Response:
    reg = registry()
    try:
        rec = reg.domains.get(domain_id)
    except UnknownDomainError:
        rec = None
    if rec is None or not _visible(owner, rec.owner):
        raise ProblemError(404, "domain-not-found", "Domain adapter not found", f"no domain adapter {domain_id!r}")
    use = domain_use(res.storage, domain_id, res.settings.retention_s)
    if use.bitstreams:
        raise _in_use_problem(domain_id, use.bitstreams, use.until)
    name = f"{domain_id}.pt"
    raw = reg.domains.files.read(name)
    reg.domains.files.remove(name)
    # a worker writes its ref, then checks the adapter is there; we remove the adapter, then check
    # the refs again: of an encode and a delete that overlap, one of the two sees the other
    use = domain_use(res.storage, domain_id, res.settings.retention_s)
    if use.bitstreams:
        reg.domains.files.write(name, raw)
        raise _in_use_problem(domain_id, use.bitstreams, use.until)
    reg.forget_domain(domain_id)
    drop_refs(res.storage, domain_id)
    log.info("domain adapter deleted", extra={"domain": domain_id, "owner": owner})
    return Response(status_code=204)
