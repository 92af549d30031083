"""Optional API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

With ``UDIC_API_KEYS`` empty, everything is open and owned by "anonymous". With keys set, every
route but /healthz and /readyz needs one, and each key sees only its owner's jobs and bitstreams
(others' are answered 404, so their existence does not leak).
"""

from __future__ import annotations

import hmac

from fastapi import Request

from service.core.config import get_settings
from service.core.errors import ProblemError

ANONYMOUS = "anonymous"


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def current_owner(request: Request) -> str:
    """FastAPI dependency: the owner the request acts as."""
    settings = get_settings()
    owners = settings.key_owners()
    if not owners:
        return ANONYMOUS
    key = _presented_key(request)
    if key:
        for known, owner in owners.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                return owner
    raise ProblemError(
        401,
        "unauthorized",
        "Missing or invalid API key",
        "send the key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
        headers={"WWW-Authenticate": 'Bearer realm="udic"'},
    )
