"""Problem details (RFC 9457) for every error the API returns.

Each error kind has a stable ``type`` URI (``urn:udic:problem:<kind>``) that clients can switch on;
``detail`` is for people. No traceback ever reaches a body: unexpected exceptions become a
generic 500 problem and are logged with the request id.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("udic.api")


def problem_type(kind: str) -> str:
    return f"urn:udic:problem:{kind}"


class ProblemError(Exception):
    """Raise anywhere in a route to answer with a problem document."""

    def __init__(
        self, status: int, kind: str, title: str, detail: str = "", headers: dict[str, str] | None = None, **extra: Any
    ):
        super().__init__(detail or title)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    status: int,
    kind: str,
    title: str,
    detail: str = "",
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": problem_type(kind), "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_HTTP_KINDS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Missing or invalid API key"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Invalid request"),
    429: ("too-many-requests", "Too many requests"),
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.status, exc.kind, exc.title, exc.detail, request.url.path, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        detail = "; ".join(
            f"{'.'.join(e['loc'][1:]) or e['loc'][0] if e['loc'] else 'request'}: {e['msg']}" for e in errors
        )
        return problem_response(422, "validation-error", "Invalid request", detail, request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind, title = _HTTP_KINDS.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else ""
        return problem_response(exc.status_code, kind, title, detail, request.url.path, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(
            500, "internal-error", "Internal server error", "the server failed; the error was logged", request.url.path
        )
