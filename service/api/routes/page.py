"""The web page at ``/``: static files shipped in the package, no build step, no CDN.

The service often runs where there is no internet, so everything the page needs is in
``service/static``. Every answer carries a strict Content-Security-Policy (scripts and styles from
this origin only, no inline script); images may also be ``blob:`` and ``data:`` URLs, which the
page makes from the user's own files and the comparison's PNGs. The page and its files need no
API key (they hold nothing private); the page asks for a key when ``/ui/config.json`` says keys
are on, and sends it with each API call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from codec.adaptation.config import PRESET_NAMES
from codec.evaluation.same_size import LABELS, SAME_SIZE_CODECS
from codec.zoo import ModelError
from service.core.errors import ProblemError
from service.core.model_registry import registry

STATIC = Path(__file__).resolve().parent.parent.parent / "static"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _static(name: str) -> Response:
    """One file of service/static by its plain name (no paths: nothing outside the folder)."""
    path = STATIC / name
    media = MEDIA_TYPES.get(path.suffix)
    if "/" in name or "\\" in name or media is None or not path.is_file():
        raise ProblemError(404, "not-found", "Not found", f"no page file {name!r}")
    return Response(path.read_bytes(), media_type=media, headers=SECURITY_HEADERS)


@router.get("/")
def index() -> Response:
    return _static("index.html")


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    return _static(name)


def _job_form_fields(request: Request) -> set[str]:
    """The form fields POST /v1/jobs takes now (the page offers a target only when it is there)."""
    for route in request.app.routes:
        if isinstance(route, APIRoute) and route.path == "/v1/jobs" and "POST" in (route.methods or ()):
            return {getattr(p, "alias", None) or p.name for p in route.dependant.body_params}
    return set()


def _qualities() -> tuple[float, float]:
    try:
        rng = registry().get("default").quality_range
    except ModelError:
        rng = None
    return rng or (1.0, 6.0)


@router.get("/ui/config.json")
async def page_config(request: Request) -> dict[str, Any]:
    """What the page needs to build its form: keys on or off, presets, limits, targets."""
    settings = request.app.state.resources.settings
    lo, hi = await run_in_threadpool(_qualities)
    fields = _job_form_fields(request)
    return {
        "auth": settings.auth_enabled,
        "presets": list(PRESET_NAMES),
        "quality": {"min": lo, "max": hi},
        "targets": sorted(f for f in fields if f.startswith("target_")),
        "max_upload_bytes": settings.max_upload_bytes,
        "max_pixels": settings.max_pixels,
        "compare_max_pixels": settings.compare_max_pixels,
        "compare_codecs": [{"codec": c, "label": LABELS[c]} for c in SAME_SIZE_CODECS],
    }
