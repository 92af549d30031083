"""Health, readiness, metrics, and the list of models."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from codec.zoo import ModelError
from codec.zoo.context_models import coding_notice
from codec.zoo.registry import SERVICE_ZOO_MODELS, ZOO_MODELS
from service.api.deps import ResourcesDep
from service.core.errors import problem_response
from service.core.model_registry import registry
from service.core.security import current_owner
from service.metrics_registry import REGISTRY
from service.models import Health, ModelInfo, Ready

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Readiness: Redis and storage reachable",
    responses={503: {"description": "not ready (problem+json)"}},
)
def readyz(request: Request, res: ResourcesDep) -> Response | Ready:
    try:
        redis_ok = bool(res.redis.ping())
    except Exception:
        redis_ok = False
    storage_ok = res.storage.ping()
    if redis_ok and storage_ok:
        return Ready(status="ready", redis=True, storage=True)
    return problem_response(
        503,
        "not-ready",
        "Not ready",
        f"redis={'ok' if redis_ok else 'down'}, storage={'ok' if storage_ok else 'down'}",
        request.url.path,
        redis=redis_ok,
        storage=storage_ok,
    )


@router.get("/metrics", response_class=Response, summary="Prometheus metrics", dependencies=[Depends(current_owner)])
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/models",
    response_model=list[ModelInfo],
    summary="Models this server can encode and decode with",
    dependencies=[Depends(current_owner)],
)
async def models() -> list[ModelInfo]:
    def probe() -> list[ModelInfo]:
        reg = registry()
        out = []
        # the embedded model, its kept previous versions (default@<hash>: old files decode), the zoo,
        # and the checkpoints this service was given (UDIC_CHECKPOINTS)
        fixed = {"default", *reg.previous.names(), *ZOO_MODELS}
        checkpoints = [name for name in reg.names() if name not in fixed]
        for name in ["default", *reg.previous.names(), *SERVICE_ZOO_MODELS, *checkpoints]:
            zoo = name in SERVICE_ZOO_MODELS
            try:
                m = reg.get(name, 1 if zoo else None)
                out.append(
                    ModelInfo(
                        name=name,
                        available=True,
                        qualities=m.quality_range,
                        hash=None if zoo else m.hash.hex(),
                        detail=m.description,
                        notice=coding_notice(m.net),
                    )
                )
            except ModelError as exc:
                out.append(ModelInfo(name=name, available=False, detail=str(exc)))
        return out

    return await run_in_threadpool(probe)
