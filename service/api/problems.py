"""The OpenAPI document's error responses, and the ``Allow`` header of a 405: both for every route.

Why one post-processing step instead of ``responses=`` on every route: the statuses that most
routes can answer follow from their shape, and a route added later must not be able to forget
them. :func:`install_problem_docs` wraps ``app.openapi`` so that every operation, whichever router
it came from, declares

- 401 and 429 when it needs an API key (its ``security``, from
  :func:`service.core.security.current_owner`; 429 is the key's rate limit and, on job
  submission, the owner's limit of unfinished jobs) -- and without keys configured, no security
  and neither status, since the server then asks for none,
- 404 when its path has parameters (unknown or someone else's id),
- 413 and 422 when it takes a request body (the body cap of ``service.middleware``; validation),
  and 400 when that body is multipart (a body the multipart parser cannot read),
  422 when it takes any parameter,

plus what a route declares itself with :func:`problems` (409, 410, 503, ...). Every 4xx/5xx
response gets the one shared :class:`Problem` schema under ``application/problem+json``, which is
what :mod:`service.core.errors` sends; FastAPI's own ``HTTPValidationError`` schema is dropped.
The 405 handler lists every method of the path in ``Allow`` (Starlette names only the first route
that matched the path), read from the same document.

One more correction to what FastAPI writes: an optional form field (``float | None``) is documented
as ``anyOf: [number, null]``, but a form cannot send a null -- the field is left out instead -- so
form bodies document the non-null type only (a client that sent the text "null" got a 422).
And every uploaded file or binary body is documented ``minLength: 1``: the server refuses empty
uploads (422), so the document must not admit them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import compile_path

from service.core.errors import PROBLEM_JSON, problem_response

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
DESCRIPTIONS = {
    400: "malformed multipart body",
    401: "missing or invalid API key",
    404: "no such resource for this API key",
    405: "method not allowed (the Allow header lists the path's methods)",
    409: "conflict with the resource's state",
    410: "gone (removed by retention)",
    413: "request body over the size limit",
    422: "invalid request: parameters, body or the uploaded content",
    429: "too many requests for this API key, or too many unfinished jobs; retry after Retry-After seconds",
    503: "temporarily unable to serve; retry after Retry-After seconds",
}
RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer", "minimum": 0}}
}
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


class Problem(BaseModel):
    """An RFC 9457 problem document; some kinds add fields (``state``, ``errors``, ...)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="urn:udic:problem:<kind>: stable, for programs to switch on")
    title: str
    status: int
    detail: str | None = Field(None, description="for people")
    instance: str | None = Field(None, description="the request path")


def problems(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's own problem statuses; ``descriptions`` as ``s409="..."``."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"description": descriptions.get(f"s{status}", DESCRIPTIONS.get(status, "problem"))}
    return out


def inferred_statuses(operation: dict[str, Any], auth_enabled: bool) -> set[int]:
    """The problem statuses that follow from an operation's shape (see the module docstring)."""
    params = operation.get("parameters", [])
    out: set[int] = set()
    if auth_enabled and operation.get("security"):
        out |= {401, 429}
    if any(p.get("in") == "path" for p in params):
        out.add(404)
    if "requestBody" in operation:
        out |= {413, 422}
        if "multipart/form-data" in operation["requestBody"].get("content", {}):
            out.add(400)  # Starlette's answer to a body its multipart parser cannot read
    if params:
        out.add(422)
    return out


def _document(operation: dict[str, Any], auth_enabled: bool) -> None:
    extra = inferred_statuses(operation, auth_enabled)
    if not auth_enabled:
        operation.pop("security", None)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status in extra:
        responses.setdefault(str(status), {"description": DESCRIPTIONS.get(status, "problem")})
    for code, resp in responses.items():
        if code.isdigit() and int(code) >= 400:
            if code == "422" and resp.get("description") == "Validation Error":
                resp["description"] = DESCRIPTIONS[422]
            resp["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
            if int(code) in (429, 503):
                resp.setdefault("headers", {}).update(RETRY_AFTER)


def problem_openapi(app: FastAPI, auth_enabled: bool) -> dict[str, Any]:
    """The app's OpenAPI document with every operation's problem responses declared."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(
        title=app.title, version=app.version, openapi_version=app.openapi_version,
        description=app.description, routes=app.routes,
    )  # fmt: skip
    for ops in spec.get("paths", {}).values():
        for operation in ops.values():
            _document(operation, auth_enabled)
    components = spec.setdefault("components", {})
    _forms_without_null(spec)
    if not auth_enabled:
        components.pop("securitySchemes", None)
    schemas = components.setdefault("schemas", {})
    for name in _VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    app.openapi_schema = spec
    return spec


def _is_binary(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" and (
        schema.get("format") == "binary" or schema.get("contentMediaType") == "application/octet-stream"
    )


def _not_empty(schema: dict[str, Any]) -> None:
    """An uploaded file (or each of a list of them) has at least one byte."""
    for s in (schema, schema.get("items", {})):
        if isinstance(s, dict) and _is_binary(s):
            s.setdefault("minLength", 1)


def _forms_without_null(spec: dict[str, Any]) -> None:
    """Drop the null branch of optional fields in multipart and urlencoded bodies (docstring)."""
    schemas = spec.get("components", {}).get("schemas", {})
    for ops in spec.get("paths", {}).values():
        for operation in ops.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media, body in content.items():
                if media not in ("multipart/form-data", "application/x-www-form-urlencoded"):
                    _not_empty(body.get("schema", {}))
                    continue
                ref = body.get("schema", {}).get("$ref", "")
                form = schemas.get(ref.rsplit("/", 1)[-1], body.get("schema", {}))
                for prop in form.get("properties", {}).values():
                    _not_empty(prop)
                    branches = prop.get("anyOf")
                    if isinstance(branches, list) and {"type": "null"} in branches:
                        rest = [b for b in branches if b != {"type": "null"}]
                        del prop["anyOf"]
                        if len(rest) == 1:
                            prop.update(rest[0])
                        else:
                            prop["anyOf"] = rest
                        if prop.get("default", 0) is None:
                            del prop["default"]


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method the document lists for the path the request names."""
    methods: set[str] = set()
    for template, ops in app.openapi().get("paths", {}).items():
        regex, _, _ = compile_path(template)
        if regex.match(path):
            methods |= {m.upper() for m in ops}
    return sorted(methods)


def install_problem_docs(app: FastAPI, auth_enabled: bool) -> None:
    """Document every operation's problems, and answer 405 with the path's full ``Allow``."""

    def openapi() -> dict[str, Any]:
        return problem_openapi(app, auth_enabled)

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(405)
    async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        allow = allowed_methods(app, request.url.path)
        if allow:
            headers["Allow"] = ", ".join(allow)
        return problem_response(405, "method-not-allowed", "Method not allowed", "", request.url.path, headers)
