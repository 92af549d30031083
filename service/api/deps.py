"""Shared per-app resources (created once in the app's lifespan), as FastAPI dependencies."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from redis import Redis
from rq import Queue

from service.core.config import Settings
from service.jobs import JobStore
from service.storage import Storage


@dataclass
class Resources:
    settings: Settings
    redis: Redis
    queue: Queue
    store: JobStore
    storage: Storage


def resources(request: Request) -> Resources:
    return request.app.state.resources  # type: ignore[no-any-return]
