"""Webhook signing and checking: the service's signature as the SDK verifies it, and the SSRF guard."""

from __future__ import annotations

import json
import time

import pytest
from udic_client import WebhookVerificationError, verify_webhook

from service.core.config import Settings
from service.core.errors import ProblemError
from service.webhooks import UnsafeURL, check_url, checked_callback, owner_secret, sign

SECRET = "whsec-test"
BODY = json.dumps({"id": "e1", "type": "job.finished", "job": {"id": "abc", "state": "finished"}}).encode()


def signed(body: bytes = BODY, t: int | None = None, secret: str = SECRET) -> dict[str, str]:
    return {"X-Udic-Signature": sign(secret, body, int(time.time()) if t is None else t)}


def test_a_signed_event_verifies_and_parses() -> None:
    event = verify_webhook(SECRET, signed(), BODY)
    assert event["type"] == "job.finished" and event["job"]["id"] == "abc"
    assert verify_webhook(SECRET, {"x-udic-signature": signed()["X-Udic-Signature"]}, BODY)  # any header case


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify_webhook("another-secret", signed(), BODY)


def test_altered_body_is_rejected() -> None:
    altered = BODY.replace(b"finished", b"failed")
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify_webhook(SECRET, signed(), altered)


def test_replayed_old_event_is_rejected() -> None:
    old = int(time.time()) - 3600
    with pytest.raises(WebhookVerificationError, match="replay"):
        verify_webhook(SECRET, signed(t=old), BODY, tolerance_s=300)
    assert verify_webhook(SECRET, signed(t=old), BODY, tolerance_s=7200)  # same bytes, wider window


def test_timestamp_is_signed_too() -> None:
    header = signed(t=1000)["X-Udic-Signature"].replace("t=1000", f"t={int(time.time())}")
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, {"X-Udic-Signature": header}, BODY)


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=notanumber,v1=abc"])
def test_missing_or_malformed_header_is_rejected(header: str | None) -> None:
    headers = {} if header is None else {"X-Udic-Signature": header}
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, headers, BODY)


def test_each_owner_has_its_own_secret() -> None:
    s = Settings(webhook_secret="server")
    assert owner_secret(s, "alice") != owner_secret(s, "bob")
    assert owner_secret(s, "alice") == owner_secret(Settings(webhook_secret="server"), "alice")
    assert owner_secret(s, "alice") != owner_secret(Settings(webhook_secret="other"), "alice")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "http:///nohost",
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
        "http://user:pw@example.com/hook",
        "http://" + "a" * 2100 + ".com/",
    ],
)
def test_unsafe_callback_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url(Settings(), url)


def test_allowlist_admits_loopback_for_tests_only() -> None:
    allow = Settings(webhook_allow_hosts="127.0.0.1")
    assert check_url(allow, "http://127.0.0.1:9/hook") == ["127.0.0.1"]
    with pytest.raises(UnsafeURL):
        check_url(allow, "http://10.0.0.1/hook")
    assert check_url(Settings(webhook_allow_hosts="10.0.0.0/8"), "http://10.9.9.9/") == ["10.9.9.9"]


def test_submission_checks_answer_422() -> None:
    assert checked_callback(Settings(), None) == ""
    with pytest.raises(ProblemError) as off:
        checked_callback(Settings(), "https://example.com/hook")
    assert off.value.status == 422 and off.value.kind == "webhooks-disabled"
    with pytest.raises(ProblemError) as bad:
        checked_callback(Settings(webhook_secret="s"), "http://127.0.0.1/hook")
    assert bad.value.status == 422 and bad.value.kind == "invalid-callback-url"
