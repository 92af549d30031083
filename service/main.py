"""The FastAPI application: ``uvicorn service.main:app`` (or ``udic-api``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis import Redis

from codec import __version__
from service.api.deps import Resources
from service.api.main import api_router
from service.api.problems import install_problem_docs
from service.api.views import job_view
from service.core.config import Settings, get_settings
from service.core.errors import install_error_handlers
from service.core.logging import setup_logging
from service.fairness import dispatch_forever
from service.metrics_registry import set_resources
from service.middleware import BodyLimitMiddleware
from service.webhooks import Deliverer, deliver_forever
from udic_jobs import storage_from_settings
from udic_jobs.storage.sweep import SweepReport, sweep

log = logging.getLogger("udic.api")

DESCRIPTION = """
Universal deep image compression as a service. Upload an image (`POST /v1/jobs`), poll the job
(`GET /v1/jobs/{id}`), download the `.udic` bitstream or its decoded PNG, or decode any bitstream
(`POST /v1/decode`). Errors are `application/problem+json` with a stable `type` per kind.
"""


def sweep_once(res: Resources) -> SweepReport:
    """Delete what has outlived its kind's lifetime (:mod:`udic_jobs.storage.sweep`): ended jobs'
    uploads, bitstreams past the retention (records expire in Redis by themselves). Never adapters."""

    def job_state(job_id: str) -> str | None:
        rec = res.store.get(job_id)
        return None if rec is None else rec.state

    report = sweep(res.storage, res.settings.retention_s, job_state)
    log.info("storage sweep", extra={"deleted": len(report.deleted), "kept": report.kept})
    return report


async def _sweep_forever(res: Resources) -> None:
    """Run :func:`sweep_once` at start and every ``UDIC_SWEEP_INTERVAL_S``; a failed sweep is logged
    and tried again at the next interval (several APIs may sweep at once: deletes are idempotent)."""
    while True:
        try:
            await asyncio.to_thread(sweep_once, res)
        except Exception:
            log.exception("storage sweep failed")
        await asyncio.sleep(res.settings.sweep_interval_s)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        setup_logging(settings.log_level, settings.log_json)
        redis = Redis.from_url(settings.redis_url, socket_timeout=10, health_check_interval=30)
        res = Resources.connect(settings, redis, storage_from_settings(settings))
        app.state.resources = res
        set_resources(res)
        log.info(
            "api started",
            extra={
                "version": __version__,
                "redis": settings.redis_url,
                "storage": res.storage.location,
                "auth": settings.auth_enabled,
            },
        )
        sweeper = asyncio.create_task(_sweep_forever(res), name="storage-sweep")
        dispatcher = asyncio.create_task(
            dispatch_forever(res.jobs.gate, settings.fair_dispatch_interval_s), name="fair-dispatch"
        )
        deliverer = Deliverer(res.store, settings, lambda rec: job_view(res, rec).model_dump(mode="json"))
        webhooks = asyncio.create_task(deliver_forever(deliverer, settings.webhook_interval_s), name="webhooks")
        try:
            yield
        finally:
            deliverer.close()
            for task in (sweeper, dispatcher, webhooks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            redis.close()

    app = FastAPI(title="udic", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    install_problem_docs(app, settings.auth_enabled)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.include_router(api_router)
    return app


app = create_app()


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    ap = argparse.ArgumentParser(description="Run the udic API server.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args(argv)
    uvicorn.run("service.main:app", host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
