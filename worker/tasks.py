"""The worker's tasks: an encode job (upload in storage -> verified bitstream in storage) and a
domain-adapter training job (sample images -> a stored adapter).

The worker depends on ``codec`` and on the job contract (``udic_jobs``: the typed payloads, the
job store, the blob storage), never on the API's modules; the settings class is the one shared
piece of ``service``. Everything a user may see is written to the job record through
:class:`udic_jobs.JobStore`: progress (throttled), final metrics, or a readable error.
Cancellation is cooperative: the progress callback checks the cancel flag between steps and stops
the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from redis import Redis
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from codec.bitstream import BitstreamError
from codec.domains.train import train_domain
from codec.imageio import CodecImage, ImageInputError, load_image
from codec.models.gained import GainedMeanScaleHyperprior
from codec.pipeline import EncodeRequest, encode
from codec.rate_control import RateTarget
from codec.roi import RoiSpec
from codec.tiling import TilingPolicy, tiling_policy
from codec.zoo import ModelError
from service.core.config import Settings, get_settings
from service.core.model_registry import registry
from udic_jobs import TERMINAL, DomainPayload, EncodePayload, JobStore, Storage, storage_from_settings
from udic_jobs.storage import bitstream_key, domain_ref_key, input_keys

log = logging.getLogger("udic.worker")


class JobCancelled(Exception):
    """Raised inside a job when its user cancelled it."""


class JobInputError(Exception):
    """The job's input turned out unusable (a readable reason goes to the user)."""


def _store(settings: Settings, redis: Redis) -> JobStore:
    return JobStore(redis, settings.key_prefix, settings.retention_s)


CANCEL_CHECK_S = 0.25


def progress_callback(store: JobStore, job_id: str, rq_job: Any, interval_s: float) -> Callable[[Any], None]:
    """The codec's progress callback for a job: throttled writes to the record and ``job.meta``, and
    cooperative cancellation. An adaptive encode calls it every iteration, so Redis is asked about
    cancellation at most every CANCEL_CHECK_S, not per iteration."""
    state = {"written": 0.0, "checked": 0.0}

    def on_progress(ev: Any) -> None:
        now = time.monotonic()
        final = ev.stage == "done"
        if final or now - state["checked"] >= CANCEL_CHECK_S:
            state["checked"] = now
            if store.cancel_requested(job_id):
                raise JobCancelled("cancelled by the user")
        if final or now - state["written"] >= interval_s:
            state["written"] = now
            data = ev.as_dict()
            store.set_progress(job_id, data)
            if rq_job is not None:
                rq_job.meta["progress"] = data
                rq_job.save_meta()

    return on_progress


# a task body: (job id, settings, the rq job or None, the job store) -> the outcome
Task = Callable[[str, Settings, Any, JobStore], dict[str, Any]]


def _run(job_id: str, task: Task, what: str) -> dict[str, Any]:
    """Run a task for a job and return its outcome (also stored in the job record).

    Outcomes a retry cannot change (bad input, cancellation, the time limit) are recorded here
    and returned normally, and the job's uploads deleted (it has ended); only crashes propagate, so
    rq's Retry re-runs just those (and jobs whose worker died).
    """
    settings = get_settings()
    rq_job = get_current_job()
    redis: Redis = rq_job.connection if rq_job is not None else Redis.from_url(settings.redis_url)
    store = _store(settings, redis)
    ended = store.get(job_id)
    if ended is not None and ended.state in TERMINAL:
        # a second run of a job that already ended: its worker lost Redis for longer than the
        # heartbeat grace, so the job was re-queued as abandoned while it went on and finished
        log.warning("job already ended; duplicate run skipped", extra={"job_id": job_id, "state": ended.state})
        return {"state": ended.state}
    try:
        return task(job_id, settings, rq_job, store)
    except JobCancelled:
        store.mark_cancelled(job_id)
        log.info("job cancelled", extra={"job_id": job_id})
        outcome = {"state": "cancelled"}
    except JobInputError as exc:
        store.mark_failed(job_id, "invalid-input", str(exc))
        log.warning("job failed", extra={"job_id": job_id, "reason": "invalid-input", "detail": str(exc)})
        outcome = {"state": "failed"}
    except JobTimeoutException:
        store.mark_failed(job_id, "timeout", f"the {what} exceeded the time limit of {settings.job_timeout_s} s")
        log.warning("job failed", extra={"job_id": job_id, "reason": "timeout"})
        outcome = {"state": "failed"}
    drop_inputs(settings, store, job_id)
    return outcome


def drop_inputs(settings: Settings, store: JobStore, job_id: str) -> None:
    """Delete an ended job's uploads (its lifetime is the job's); the API's sweep catches any left."""
    rec = store.get(job_id)
    if rec is None:
        return
    storage = storage_from_settings(settings)
    for key in input_keys(job_id, rec.options):
        storage.delete(key)


def encode_job(job_id: str) -> dict[str, Any]:
    """rq entry point of :class:`udic_jobs.EncodePayload` jobs: upload -> verified bitstream."""
    return _run(job_id, _encode, "encode")


def _encode_request(opts: EncodePayload, settings: Settings) -> EncodeRequest:
    """The codec request for a job's options; an adaptive encode gets at most 80% of the job's time
    limit (all of it left for the final coding would be too tight), whatever the user asked."""
    cap = settings.job_timeout_s * 0.8
    return EncodeRequest(
        model=opts.model or settings.default_model,
        quality=opts.quality,
        lmbda=opts.lmbda,
        adaptation=opts.adaptation,
        time_budget_s=min(opts.time_budget_s, cap) if opts.time_budget_s else cap,
        domain=opts.domain,
        target=RateTarget.from_options(opts.target_bytes, opts.target_bpp, opts.target_psnr),
        roi=RoiSpec.from_json(opts.roi) if opts.roi else None,
    )


def _encode(job_id: str, settings: Settings, rq_job: Any, store: JobStore) -> dict[str, Any]:
    storage = storage_from_settings(settings)
    rec = store.get(job_id)
    if rec is None:
        raise JobInputError(f"job {job_id} has no record (expired?)")
    if store.cancel_requested(job_id):
        raise JobCancelled("cancelled before it started")
    started = store.mark_running(rec)
    log.info("job started", extra={"job_id": job_id, "owner": rec.owner, "options": rec.options.model_dump()})
    on_progress = progress_callback(store, job_id, rq_job, settings.progress_interval_s)

    try:
        upload = storage.get(rec.upload_key)
    except KeyError:
        raise JobInputError("the uploaded image is no longer in storage") from None
    request = _encode_request(rec.payload(EncodePayload), settings)
    try:
        # large images are coded in tiles (memory set by the tile size): the configured policy
        with tiling_policy(TilingPolicy.from_pixels(settings.tile_threshold_pixels, settings.tile_px)):
            outcome = encode(upload, request, registry=registry(), max_pixels=settings.max_pixels, progress=on_progress)
    except (ImageInputError, ModelError, BitstreamError) as exc:
        raise JobInputError(str(exc)) from None
    key = bitstream_key(job_id)
    if outcome.domain is not None:
        _claim_domain(storage, outcome.domain, job_id)
    storage.put(key, outcome.data)
    seconds = round(time.time() - started, 3)
    metrics = {**outcome.metrics(), "encode_seconds": seconds}
    store.mark_finished(job_id, bitstream_key=key, metrics=metrics)
    store.record_encode_seconds(seconds)
    storage.delete(rec.upload_key)
    log.info("job finished", extra={"job_id": job_id, "bpp": round(outcome.result.bpp, 4), "seconds": seconds})
    return {"state": "finished", **metrics}


def _claim_domain(storage: Storage, domain_id: str, job_id: str) -> None:
    """Record that this job's bitstream needs ``domain_id`` (before the bitstream is stored, so none is
    without its ref), then check the adapter is still there: ``DELETE /v1/domains/{id}`` removes it
    and then checks the refs, so of an overlapping encode and delete, one sees the other."""
    ref = domain_ref_key(domain_id, job_id)
    storage.put(ref, b"")
    if not registry().domains.exists(domain_id):
        storage.delete(ref)
        raise JobInputError(f"the domain adapter {domain_id} was deleted during the encode")


def on_job_failure(job: Any, connection: Redis, exc_type: type, exc_value: BaseException, tb: Any) -> None:
    """rq failure callback: also called by rq's registry cleanup when a worker died mid-job."""
    store = _store(get_settings(), connection)
    job_id = job.args[0] if job.args else job.id
    rec = store.get(job_id)
    if rec is None or rec.state in TERMINAL:  # e.g. reaped as abandoned after it had finished
        return
    if store.cancel_requested(job_id):
        store.mark_cancelled(job_id)
        log.info("job cancelled", extra={"job_id": job_id})
        drop_inputs(get_settings(), store, job_id)
        return
    name = getattr(exc_type, "__name__", str(exc_type))
    kind, detail = {
        "AbandonedJobError": ("worker-lost", "the worker running this job stopped (crashed or was killed)"),
    }.get(name, ("encode-failed", f"the encode failed on the server ({name}); it was logged"))
    if getattr(job, "retries_left", 0):
        store.mark_retrying(job_id, kind, detail + "; retrying")
        log.warning("job retried", extra={"job_id": job_id, "reason": kind})
        return
    store.mark_failed(job_id, kind, detail)
    log.warning("job failed", extra={"job_id": job_id, "reason": kind, "detail": detail})
    drop_inputs(get_settings(), store, job_id)


def train_domain_job(job_id: str) -> dict[str, Any]:
    """rq entry point of :class:`udic_jobs.DomainPayload` jobs: sample images -> a stored adapter."""
    return _run(job_id, _train_domain, "training")


def _load_samples(storage: Storage, job_id: str, opts: DomainPayload, max_pixels: int) -> list[CodecImage]:
    try:
        return [load_image(storage.get(key), max_pixels=max_pixels) for key in input_keys(job_id, opts)]
    except KeyError:
        raise JobInputError("the sample images are no longer in storage") from None
    except ImageInputError as exc:
        raise JobInputError(str(exc)) from None


def _train_domain(job_id: str, settings: Settings, rq_job: Any, store: JobStore) -> dict[str, Any]:
    storage = storage_from_settings(settings)
    rec = store.get(job_id)
    if rec is None:
        raise JobInputError(f"job {job_id} has no record (expired?)")
    opts = rec.payload(DomainPayload)
    store.mark_running(rec)
    log.info("domain training started", extra={"job_id": job_id, "owner": rec.owner, "domain_name": opts.domain_name})
    images = _load_samples(storage, job_id, opts, settings.max_pixels)
    on_progress = progress_callback(store, job_id, rq_job, settings.progress_interval_s)

    reg = registry()
    base = reg.get(opts.model or settings.default_model)
    if not isinstance(base.net, GainedMeanScaleHyperprior):  # the API queues only variable-rate models
        raise JobInputError(f"domain adapters need a variable-rate model, not {base.name}")
    cap = settings.job_timeout_s * 0.8
    trained = train_domain(
        base.net,
        images,
        steps=opts.steps,
        stage2_steps=opts.stage2_steps,
        time_budget_s=min(opts.time_budget_s or cap, cap),
        progress=on_progress,
    )
    saved = reg.domains.save(opts.domain_name, base.name, base.hash, trained, owner=rec.owner)
    summary = saved.summary()
    steps = sum(trained.steps)
    progress = {"stage": "done", "iteration": steps, "total": steps, "elapsed_s": trained.seconds}
    store.mark_finished(job_id, metrics={"domain": summary}, progress=progress)
    for key in input_keys(job_id, opts):
        storage.delete(key)
    log.info(
        "domain adapter trained", extra={"job_id": job_id, "domain": saved.id, "gain_pct": round(trained.gain_pct, 2)}
    )
    return {"state": "finished", "domain": summary}
