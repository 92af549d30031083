"""Checking a webhook event from the udic service: ``verify_webhook``.

The service signs each event with ``X-Udic-Signature: t=<unix seconds>,v1=<hex>``, where the hex is
HMAC-SHA256 under your secret (``GET /v1/webhooks/secret``) of ``"<t>." + <raw body>``. Verify the
raw bytes as received, before parsing them: a re-serialised body would not match.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from udic_client.errors import UdicError

SIGNATURE_HEADER = "X-Udic-Signature"


class WebhookVerificationError(UdicError):
    """The event is not from the service, was altered, or is too old (a replay)."""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def verify_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, tolerance_s: float = 300.0, now: float | None = None
) -> dict[str, Any]:
    """The event (parsed JSON) if its signature is right and its timestamp within ``tolerance_s``
    of now; :class:`WebhookVerificationError` otherwise."""
    raw = _header(headers, SIGNATURE_HEADER)
    if not raw:
        raise WebhookVerificationError(f"no {SIGNATURE_HEADER} header")
    fields: dict[str, list[str]] = {}
    for part in raw.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        raise WebhookVerificationError(f"{SIGNATURE_HEADER} has no timestamp t=") from None
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        raise WebhookVerificationError(f"the event's timestamp is more than {tolerance_s:g} s from now (a replay?)")
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, v) for v in fields.get("v1", [])):
        raise WebhookVerificationError("the signature does not match the body (wrong secret, or altered)")
    try:
        event: dict[str, Any] = json.loads(body)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None
    return event
