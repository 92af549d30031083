"""Webhooks: a signed POST to the job's ``callback_url`` when it ends (finished, failed, cancelled).

**Where delivery runs, and why.** The state transition that ends a job (worker or API) only adds the
job to a Redis schedule (:meth:`udic_jobs.JobStore._ended`); the API's lifespan runs
:func:`deliver_forever`, which takes due deliveries off that schedule (``ZREM``, so of several API
processes exactly one takes each) and sends them from a small thread pool. A receiver that is slow
or down therefore never holds up a worker, and an encode never waits on the network.

**What is sent.** ``{"id", "type": "job.<state>", "created_at", "job": <the job as GET
/v1/jobs/{id} shows it>}``, with ``X-Udic-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`` under the owner's secret (:func:`owner_secret`, from ``UDIC_WEBHOOK_SECRET`` and the
owner: each key has its own, shown by ``GET /v1/webhooks/secret``). The SDK's ``verify_webhook``
checks it.

**Retries.** A 2xx ends delivery. Anything else (an error status, a timeout of
``UDIC_WEBHOOK_TIMEOUT_S``, a refused connection) is retried after ``UDIC_WEBHOOK_BACKOFF_S`` x 2^n
(at most 60 s), until ``UDIC_WEBHOOK_MAX_ATTEMPTS`` attempts or ``UDIC_WEBHOOK_RETRY_FOR_S`` seconds
since the first; then delivery stops (``webhook.state`` = "failed"). Every attempt is recorded on the
job (``webhook.attempts``). The job's own state never changes. Redirects are not followed.

**SSRF guard.** Only http and https URLs; the host is resolved and every address must be public:
loopback, private, link-local, multicast, reserved and unspecified addresses are refused unless the
host or address is in ``UDIC_WEBHOOK_ALLOW_HOSTS`` (tests put 127.0.0.1 there). Checked when the job
is submitted (422) and again before every attempt, since DNS answers change. For http the request
goes to the address that was checked; for https it goes by name (the certificate needs it), so a DNS
answer that changes between the check and the connection is the one case the guard cannot see.
A process that stops while sending loses that attempt (the schedule entry was taken).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from service.core.config import Settings
from service.core.errors import ProblemError
from udic_jobs import JobRecord, JobStore

log = logging.getLogger("udic.api")
MAX_URL = 2000
MAX_BACKOFF_S = 60.0


class UnsafeURL(ValueError):
    pass


def owner_secret(settings: Settings, owner: str) -> str:
    """The key an owner's events are signed with (derived: nothing to store or rotate per key)."""
    return hmac.new(settings.webhook_secret.encode(), f"owner:{owner}".encode(), hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, t: int) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _allowed(settings: Settings, host: str, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    for item in filter(None, (s.strip() for s in settings.webhook_allow_hosts.split(","))):
        if item.lower() == host.lower():
            return True
        try:
            if addr in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return addr.is_global and not addr.is_multicast


def check_url(settings: Settings, url: str) -> list[str]:
    """The addresses ``url``'s host resolves to, all allowed; UnsafeURL otherwise."""
    if len(url) > MAX_URL:
        raise UnsafeURL(f"the callback URL is longer than {MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL("the callback URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise UnsafeURL("the callback URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise UnsafeURL(f"the callback host does not resolve: {exc}") from None
    addrs = sorted({str(info[4][0]) for info in infos})
    for a in addrs:
        addr = ipaddress.ip_address(a.split("%")[0])
        if not _allowed(settings, parts.hostname, addr):
            raise UnsafeURL(f"the callback host resolves to {a}, a loopback, private or reserved address")
    return addrs


def checked_callback(settings: Settings, url: str | None) -> str:
    """The callback URL of a submission, checked (422), or "" for none."""
    if not url:
        return ""
    if not settings.webhook_secret:
        raise ProblemError(
            422, "webhooks-disabled", "Webhooks are off", "this server has no UDIC_WEBHOOK_SECRET: poll instead"
        )
    try:
        check_url(settings, url)
    except UnsafeURL as exc:
        raise ProblemError(422, "invalid-callback-url", "Invalid callback URL", str(exc)) from None
    return url


def _target(url: str, addrs: list[str]) -> tuple[str, dict[str, str]]:
    """Where to connect: for http the checked address itself (with the Host header of the URL)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return url, {}
    ip = addrs[0]
    host = f"[{ip}]" if ":" in ip else ip
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc)), {"Host": parts.netloc}


class Deliverer:
    """Sends due events (one thread per delivery, ``webhook_concurrency`` at a time)."""

    def __init__(self, store: JobStore, settings: Settings, render: Any):
        self.store, self.settings, self.render = store, settings, render
        self.pool = ThreadPoolExecutor(settings.webhook_concurrency, thread_name_prefix="webhook")

    def tick(self) -> int:
        """Start every due delivery this process can claim; returns how many it started."""
        started = 0
        for job_id in self.store.due_webhooks(time.time(), 50):
            if self.store.claim_webhook(job_id):
                self.pool.submit(self.attempt, job_id)
                started += 1
        return started

    def attempt(self, job_id: str) -> None:
        try:
            self._attempt(job_id)
        except Exception:
            log.exception("webhook delivery failed", extra={"job_id": job_id})

    def _attempt(self, job_id: str) -> None:
        rec = self.store.get(job_id)
        if rec is None or not rec.callback_url:
            return
        hook = dict(rec.webhook) or {"url": rec.callback_url, "state": "pending", "attempts": []}
        attempts: list[dict[str, Any]] = list(hook.get("attempts", []))
        body = self._event(rec)
        t0 = time.time()
        status, error = self._send(rec, body)
        attempts.append({"at": round(t0, 3), "status": status, "error": error, "ms": round(1000 * (time.time() - t0))})
        first = attempts[0]["at"]
        s = self.settings
        if status is not None and 200 <= status < 300:
            hook["state"] = "delivered"
        elif len(attempts) >= s.webhook_max_attempts or time.time() - first >= s.webhook_retry_for_s:
            hook["state"] = "failed"
        else:
            delay = min(MAX_BACKOFF_S, s.webhook_backoff_s * 2 ** (len(attempts) - 1))
            self.store.schedule_webhook(job_id, time.time() + delay)
        hook["attempts"] = attempts
        self.store.update(job_id, webhook=hook)
        log.info("webhook attempt", extra={"job_id": job_id, "status": status, "error": error, "state": hook["state"]})

    def _event(self, rec: JobRecord) -> bytes:
        view = self.render(rec)
        event = {"id": uuid.uuid4().hex, "type": f"job.{rec.state}", "created_at": time.time(), "job": view}
        return json.dumps(event, separators=(",", ":")).encode()

    def _send(self, rec: JobRecord, body: bytes) -> tuple[int | None, str]:
        try:
            addrs = check_url(self.settings, rec.callback_url)
        except UnsafeURL as exc:
            return None, str(exc)
        url, headers = _target(rec.callback_url, addrs)
        secret = owner_secret(self.settings, rec.owner)
        headers |= {
            "Content-Type": "application/json",
            "User-Agent": "udic-webhooks/1",
            "X-Udic-Signature": sign(secret, body, int(time.time())),
        }
        try:
            with httpx.Client(timeout=self.settings.webhook_timeout_s, follow_redirects=False) as client:
                r = client.post(url, content=body, headers=headers)
            return r.status_code, "" if r.is_success else f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


async def deliver_forever(deliverer: Deliverer, interval_s: float) -> None:
    """Check the schedule every ``interval_s`` (runs in the API's lifespan)."""
    while True:
        try:
            await asyncio.to_thread(deliverer.tick)
        except Exception:
            log.exception("webhook schedule check failed")
        await asyncio.sleep(interval_s)
