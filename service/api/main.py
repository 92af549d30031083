"""All routes of the API in one router (the FastAPI template's ``api/main.py``)."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routes import bitstreams, compare, domains, jobs, page, system, webhooks

api_router = APIRouter()
api_router.include_router(system.router)
api_router.include_router(jobs.router)
api_router.include_router(bitstreams.router)
api_router.include_router(domains.router)
api_router.include_router(compare.router)
api_router.include_router(page.router)
api_router.include_router(webhooks.router)
