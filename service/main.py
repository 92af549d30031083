"""The FastAPI application: ``uvicorn service.main:app`` (or ``udic-api``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis import Redis

from codec import __version__
from service.api.deps import Resources
from service.api.main import api_router
from service.core.config import Settings, get_settings
from service.core.errors import install_error_handlers
from service.core.logging import setup_logging
from service.metrics_registry import set_resources
from service.middleware import BodyLimitMiddleware
from udic_jobs import storage_from_settings

log = logging.getLogger("udic.api")

DESCRIPTION = """
Universal deep image compression as a service. Upload an image (`POST /v1/jobs`), poll the job
(`GET /v1/jobs/{id}`), download the `.udic` bitstream or its decoded PNG, or decode any bitstream
(`POST /v1/decode`). Errors are `application/problem+json` with a stable `type` per kind.
"""


async def _sweep_forever(res: Resources) -> None:
    """Retention: delete uploads and bitstreams older than UDIC_RETENTION_S (records expire in Redis)."""
    interval = max(60.0, min(3600.0, res.settings.retention_s / 24))
    while True:
        try:
            n = await asyncio.to_thread(res.storage.sweep, res.settings.retention_s)
            if n:
                log.info("retention sweep", extra={"deleted_files": n})
        except Exception:
            log.exception("retention sweep failed")
        await asyncio.sleep(interval)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        setup_logging(settings.log_level, settings.log_json)
        redis = Redis.from_url(settings.redis_url, socket_timeout=10, health_check_interval=30)
        res = Resources.connect(settings, redis, storage_from_settings(settings))
        app.state.resources = res
        set_resources(res)
        swept = res.storage.sweep(settings.retention_s)
        log.info(
            "api started",
            extra={
                "version": __version__,
                "redis": settings.redis_url,
                "storage": str(settings.storage_root),
                "auth": settings.auth_enabled,
                "swept_expired_files": swept,
            },
        )
        yield
        redis.close()

    app = FastAPI(title="udic", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
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
