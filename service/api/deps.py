"""Shared per-app resources (created once in the app's lifespan), as FastAPI dependencies.

Routes take ``res: ResourcesDep`` and ``owner: OwnerDep`` (the FastAPI template's ``*Dep`` style)
and reach jobs only through ``res.jobs`` (queue policy, state) and ``res.store`` (records): neither
Redis keys nor rq appear in a route.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis import Redis
from rq import Queue

from service.core.config import Settings
from service.core.security import current_owner
from service.fairness import RateLimiter
from service.jobs import JobService
from udic_jobs import JobStore, Storage


@dataclass
class Resources:
    settings: Settings
    redis: Redis
    queue: Queue
    store: JobStore
    storage: Storage
    jobs: JobService
    limiter: RateLimiter

    @classmethod
    def connect(cls, settings: Settings, redis: Redis, storage: Storage) -> Resources:
        queue = Queue(settings.queue_name, connection=redis)
        store = JobStore(redis, settings.key_prefix, settings.retention_s)
        return cls(
            settings, redis, queue, store, storage, JobService(store, queue, settings), RateLimiter(store, settings)
        )


async def resources(request: Request) -> Resources:
    """Async (no I/O here): a sync dependency would cost every request a hop to the thread pool."""
    res: Resources = request.app.state.resources
    return res


ResourcesDep = Annotated[Resources, Depends(resources)]
OwnerDep = Annotated[str, Depends(current_owner)]
