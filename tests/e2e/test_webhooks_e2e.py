"""Webhooks on the real stack: a signed event that the SDK verifies, a receiver that is down (its
retries, then delivery stops and the job stays finished), and a slow receiver that does not hold up
the worker. The e2e stack allows 127.0.0.1 (UDIC_WEBHOOK_ALLOW_HOSTS), retries after 0.3 s, 0.6 s
(3 attempts at most) and gives an attempt 2 s."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from udic_client import Client, WebhookVerificationError, verify_webhook

from service import stack as st
from tests.e2e.conftest import KEYS, E2EStack

pytestmark = pytest.mark.e2e


@dataclass
class Receiver:
    url: str
    delay_s: float = 0.0
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(rec.delay_s)
            rec.got.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/udic"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


def http(e2e: E2EStack, who: str = "alice") -> httpx.Client:
    return httpx.Client(base_url=e2e.url, headers={"Authorization": f"Bearer {KEYS[who]}"}, timeout=60)


def submit(c: httpx.Client, png: bytes, callback_url: str | None) -> str:
    data = {"quality": "1", **({"callback_url": callback_url} if callback_url else {})}
    r = c.post("/v1/jobs", files={"file": ("hook.png", png)}, data=data)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def wait_for(c: httpx.Client, job_id: str, check: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = c.get(f"/v1/jobs/{job_id}").json()
        if check(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: condition not met; last {job}")


def test_finished_job_posts_a_signed_event_the_sdk_verifies(
    e2e: E2EStack, receiver: Receiver, small_png: bytes
) -> None:
    sdk = Client(e2e.url, api_key=KEYS["alice"], poll_interval=0.05)
    job_id = sdk.submit(small_png, quality=1, callback_url=receiver.url).id
    with http(e2e) as c:
        secret = c.get("/v1/webhooks/secret").json()["secret"]
        job = wait_for(c, job_id, lambda j: (j.get("webhook") or {}).get("state") == "delivered")
    assert job_id in {j.id for j in sdk.jobs(state="finished")}
    assert sdk.job(job_id).webhook["state"] == "delivered"  # type: ignore[index]
    assert job["state"] == "finished" and len(job["webhook"]["attempts"]) == 1
    assert job["webhook"]["attempts"][0]["status"] == 204
    (headers, body), *_ = receiver.got
    event = verify_webhook(secret, headers, body)
    assert event["type"] == "job.finished" and event["job"]["id"] == job_id
    assert event["job"]["metrics"]["bytes"] > 0 and event["job"]["links"]["bitstream"]
    with http(e2e, "bob") as bob:  # another key's secret does not verify alice's events
        bobs = bob.get("/v1/webhooks/secret").json()["secret"]
    with pytest.raises(WebhookVerificationError):
        verify_webhook(bobs, headers, body)


def test_receiver_down_gets_retries_then_delivery_stops_and_job_stays_finished(e2e: E2EStack, small_png: bytes) -> None:
    down = f"http://127.0.0.1:{st.free_port()}/nobody-listens"
    with http(e2e) as c:
        job_id = submit(c, small_png, down)
        job = wait_for(c, job_id, lambda j: (j.get("webhook") or {}).get("state") == "failed")
        assert job["state"] == "finished"
        attempts = job["webhook"]["attempts"]
        assert len(attempts) == 3 and all(a["status"] is None and a["error"] for a in attempts)
        gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(attempts)]
        assert gaps[0] >= 0.25 and gaps[1] >= 0.5  # backoff 0.3 s, then 0.6 s
        time.sleep(2.0)  # nothing more is tried
        again = c.get(f"/v1/jobs/{job_id}").json()
        assert len(again["webhook"]["attempts"]) == 3 and again["state"] == "finished"
        assert c.get(f"/v1/bitstreams/{job_id}").status_code == 200


def test_slow_receiver_does_not_hold_up_the_worker(e2e: E2EStack, receiver: Receiver, small_png: bytes) -> None:
    receiver.delay_s = 5.0  # longer than an attempt's 2 s limit
    with http(e2e) as c:
        first = submit(c, small_png, receiver.url)
        wait_for(c, first, lambda j: j["state"] == "finished")
        second = submit(c, small_png, None)
        done = wait_for(c, second, lambda j: j["state"] == "finished", timeout=60)
        hook = wait_for(c, first, lambda j: (j.get("webhook") or {}).get("state") == "failed", timeout=60)["webhook"]
    assert all(a["status"] is None and "Timeout" in a["error"] for a in hook["attempts"]), hook
    # the second job finished while the first one's deliveries were still timing out
    assert done["finished_at"] < hook["attempts"][-1]["at"] + 2.0


@pytest.mark.parametrize("url", ["http://10.0.0.5/hook", "ftp://127.0.0.1/hook", "http://169.254.169.254/"])
def test_unsafe_callback_is_refused_at_submission(e2e: E2EStack, small_png: bytes, url: str) -> None:
    with http(e2e) as c:
        r = c.post("/v1/jobs", files={"file": ("x.png", small_png)}, data={"callback_url": url})
    assert r.status_code == 422 and r.json()["type"] == "urn:udic:problem:invalid-callback-url"
