"""Optional API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

With ``UDIC_API_KEYS`` empty, everything is open and owned by "anonymous". With keys set, every
route but /healthz and /readyz needs one, and each key sees only its owner's jobs and bitstreams
(others' are answered 404, so their existence does not leak).

The two ways in are declared as OpenAPI security schemes (the ``Security`` parameters below are for
the document; the key is read from the request as before), and a keyed request also counts against
its key's rate limit (:class:`service.fairness.RateLimiter`, 429), so every route that needs a key
is rate limited and documented so (:mod:`service.api.problems`).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.core.config import get_settings
from service.core.errors import ProblemError

ANONYMOUS = "anonymous"
BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <key> (when UDIC_API_KEYS is set)")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key in X-API-Key")


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


async def current_owner(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    _api_key: Annotated[str | None, Security(API_KEY)] = None,
) -> str:
    """FastAPI dependency: the owner the request acts as (429 past the key's rate limit).

    Async, so a request does not hop to the thread pool for it; the rate limiter's one Redis round
    trip (a local pipeline, well under a millisecond) runs on the event loop."""
    settings = get_settings()
    owners = settings.key_owners()
    if not owners:
        return ANONYMOUS
    key = _presented_key(request)
    if key:
        for known, owner in owners.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                _rate_limit(request, owner)
                return owner
    raise ProblemError(
        401,
        "unauthorized",
        "Missing or invalid API key",
        "send the key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
        headers={"WWW-Authenticate": 'Bearer realm="udic"'},
    )


def _rate_limit(request: Request, owner: str) -> None:
    """The app's rate limiter (made in its lifespan; absent in an app without one) checks the key."""
    resources: Any = getattr(request.app.state, "resources", None)
    limiter = getattr(resources, "limiter", None)
    if limiter is not None:
        limiter.check(owner)
