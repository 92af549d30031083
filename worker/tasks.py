"""The encode job, run by a worker: upload in storage -> verified bitstream in storage.

Everything a user may see is written to the job record (service.jobs): progress (throttled),
final metrics, or a readable error. Cancellation is cooperative: the progress callback checks
the cancel flag between steps and stops the encode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from redis import Redis
from rq import get_current_job

from service.core.config import Settings, get_settings
from service.decoding import registry
from service.jobs import JobStore
from service.storage import storage_from_settings

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


def encode_job(job_id: str) -> dict[str, Any]:
    """rq entry point. Returns the outcome (also stored in the job record).

    Outcomes a retry cannot change (bad input, cancellation, the time limit) are recorded here
    and returned normally; only crashes propagate, so rq's Retry re-runs just those (and jobs
    whose worker died).
    """
    from rq.timeouts import JobTimeoutException

    settings = get_settings()
    rq_job = get_current_job()
    redis: Redis = rq_job.connection if rq_job is not None else Redis.from_url(settings.redis_url)
    store = _store(settings, redis)
    try:
        return _encode(job_id, settings, rq_job, redis, store)
    except JobCancelled:
        store.update(job_id, state="cancelled", finished_at=time.time(), error={})
        store.count_state("cancelled")
        log.info("job cancelled", extra={"job_id": job_id})
        return {"state": "cancelled"}
    except JobInputError as exc:
        store.update(
            job_id, state="failed", finished_at=time.time(), error={"type": "invalid-input", "detail": str(exc)}
        )
        store.count_state("failed")
        log.warning("job failed", extra={"job_id": job_id, "reason": "invalid-input", "detail": str(exc)})
        return {"state": "failed"}
    except JobTimeoutException:
        detail = f"the encode exceeded the time limit of {settings.job_timeout_s} s"
        store.update(job_id, state="failed", finished_at=time.time(), error={"type": "timeout", "detail": detail})
        store.count_state("failed")
        log.warning("job failed", extra={"job_id": job_id, "reason": "timeout"})
        return {"state": "failed"}


def _encode(job_id: str, settings: Settings, rq_job: Any, redis: Redis, store: JobStore) -> dict[str, Any]:
    from codec.bitstream import BitstreamError
    from codec.coder import encode_report, read_header
    from codec.imageio import ImageInputError
    from codec.zoo import ModelError

    storage = storage_from_settings(settings)
    rec = store.get(job_id)
    if rec is None:
        raise JobInputError(f"job {job_id} has no record (expired?)")
    if store.cancel_requested(job_id):
        raise JobCancelled("cancelled before it started")
    started = time.time()
    store.update(job_id, state="running", started_at=started, attempts=rec.attempts + 1, error={})
    log.info("job started", extra={"job_id": job_id, "owner": rec.owner, "options": rec.options})
    on_progress = progress_callback(store, job_id, rq_job, settings.progress_interval_s)

    try:
        upload = storage.get(rec.upload_key)
    except KeyError:
        raise JobInputError("the uploaded image is no longer in storage") from None
    opts = rec.options
    preset = opts.get("adaptation") or "none"
    choice, saving = "plain", 0.0
    try:
        if preset == "none":
            result = encode_report(
                upload,
                model=opts.get("model") or settings.default_model,
                quality=opts.get("quality"),
                lmbda=opts.get("lmbda"),
                max_pixels=settings.max_pixels,
                progress=on_progress,
                registry=registry(),
                domain=opts.get("domain"),
            )
        else:
            from codec.adaptation.encoder import adaptive_encode

            budget = opts.get("time_budget_s")
            budget = min(budget, settings.job_timeout_s * 0.8) if budget else settings.job_timeout_s * 0.8
            out = adaptive_encode(
                upload,
                model=opts.get("model") or settings.default_model,
                quality=opts.get("quality"),
                lmbda=opts.get("lmbda"),
                config=preset,
                max_pixels=settings.max_pixels,
                progress=on_progress,
                time_budget_s=budget,
                registry=registry(),
                domain=opts.get("domain"),
            )
            result, choice = out.result, out.choice
            saving = 100.0 * (1.0 - out.costs[choice] / out.costs["plain"]) if out.costs["plain"] > 0 else 0.0
    except (ImageInputError, ModelError, BitstreamError) as exc:
        raise JobInputError(str(exc)) from None
    key = f"bitstreams/{job_id}.udic"
    storage.put(key, result.data)
    metrics = {
        "bytes": len(result.data),
        "bpp": result.bpp,
        "psnr": None if result.psnr == float("inf") else result.psnr,
        "width": result.width,
        "height": result.height,
        "model": result.model,
        "quality": result.level + 1.0,
        "encode_seconds": round(time.time() - started, 3),
        "adaptation": preset,
        "adaptation_choice": choice,
        "rd_saving_pct": round(saving, 3),
        "domain": read_header(result.data)["domain"],
    }
    store.update(job_id, state="finished", bitstream_key=key, metrics=metrics, finished_at=time.time())
    store.count_state("finished")
    redis.rpush(f"{settings.key_prefix}:stats:encode_seconds", metrics["encode_seconds"])
    redis.ltrim(f"{settings.key_prefix}:stats:encode_seconds", -1000, -1)
    storage.delete(rec.upload_key)
    log.info(
        "job finished", extra={"job_id": job_id, "bpp": round(result.bpp, 4), "seconds": metrics["encode_seconds"]}
    )
    return {"state": "finished", **metrics}


def on_job_failure(job: Any, connection: Redis, exc_type: type, exc_value: BaseException, tb: Any) -> None:
    """rq failure callback: also called by rq's registry cleanup when a worker died mid-job."""
    settings = get_settings()
    store = _store(settings, connection)
    job_id = job.args[0] if job.args else job.id
    rec = store.get(job_id)
    if rec is None:
        return
    name = getattr(exc_type, "__name__", str(exc_type))
    if store.cancel_requested(job_id):
        store.update(job_id, state="cancelled", finished_at=time.time(), error={})
        store.count_state("cancelled")
        log.info("job cancelled", extra={"job_id": job_id})
        return
    retrying = bool(getattr(job, "retries_left", 0))
    kind, detail = {
        "AbandonedJobError": ("worker-lost", "the worker running this job stopped (crashed or was killed)"),
    }.get(name, ("encode-failed", f"the encode failed on the server ({name}); it was logged"))
    if retrying:
        store.update(job_id, state="queued", error={"type": kind, "detail": detail + "; retrying"})
        log.warning("job retried", extra={"job_id": job_id, "reason": kind})
        return
    store.update(job_id, state="failed", finished_at=time.time(), error={"type": kind, "detail": detail})
    store.count_state("failed")
    log.warning("job failed", extra={"job_id": job_id, "reason": kind, "detail": detail})


def train_domain_job(job_id: str) -> dict[str, Any]:
    """rq entry point: train a domain adapter from the job's sample images and store it."""
    settings = get_settings()
    rq_job = get_current_job()
    redis: Redis = rq_job.connection if rq_job is not None else Redis.from_url(settings.redis_url)
    store = _store(settings, redis)
    try:
        return _train_domain(job_id, settings, rq_job, store)
    except JobCancelled:
        store.update(job_id, state="cancelled", finished_at=time.time(), error={})
        store.count_state("cancelled")
        return {"state": "cancelled"}
    except JobInputError as exc:
        store.update(
            job_id, state="failed", finished_at=time.time(), error={"type": "invalid-input", "detail": str(exc)}
        )
        store.count_state("failed")
        return {"state": "failed"}


def _train_domain(job_id: str, settings: Settings, rq_job: Any, store: JobStore) -> dict[str, Any]:
    from codec.domains.train import train_domain
    from codec.imageio import ImageInputError, load_image

    storage = storage_from_settings(settings)
    rec = store.get(job_id)
    if rec is None:
        raise JobInputError(f"job {job_id} has no record (expired?)")
    opts = rec.options
    started = time.time()
    store.update(job_id, state="running", started_at=started, attempts=rec.attempts + 1, error={})
    log.info(
        "domain training started", extra={"job_id": job_id, "owner": rec.owner, "domain_name": opts.get("domain_name")}
    )
    images = []
    try:
        for i in range(int(opts["samples"])):
            images.append(load_image(storage.get(f"{rec.upload_key}/{i}"), max_pixels=settings.max_pixels))
    except KeyError:
        raise JobInputError("the sample images are no longer in storage") from None
    except ImageInputError as exc:
        raise JobInputError(str(exc)) from None
    on_progress = progress_callback(store, job_id, rq_job, settings.progress_interval_s)

    reg = registry()
    base = reg.get(opts.get("model") or settings.default_model)
    budget = opts.get("time_budget_s") or settings.job_timeout_s * 0.8
    trained = train_domain(
        base.net,
        images,
        steps=int(opts["steps"]),
        stage2_steps=int(opts["stage2_steps"]),
        time_budget_s=min(float(budget), settings.job_timeout_s * 0.8),
        progress=on_progress,
    )
    saved = reg.domains.save(str(opts["domain_name"]), base.name, base.hash, trained, owner=rec.owner)
    summary = saved.summary()
    store.update(
        job_id,
        state="finished",
        finished_at=time.time(),
        metrics={"domain": summary},
        progress={
            "stage": "done",
            "iteration": sum(trained.steps),
            "total": sum(trained.steps),
            "elapsed_s": trained.seconds,
        },
    )
    store.count_state("finished")
    for i in range(int(opts["samples"])):
        storage.delete(f"{rec.upload_key}/{i}")
    log.info(
        "domain adapter trained", extra={"job_id": job_id, "domain": saved.id, "gain_pct": round(trained.gain_pct, 2)}
    )
    return {"state": "finished", "domain": summary}
