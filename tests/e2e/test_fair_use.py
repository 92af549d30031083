"""Fair use per key on the real stack (one worker, keys on, UDIC_MAX_ACTIVE_JOBS_PER_OWNER=6).

A flood of uploads from one key gets 429s past its limit of unfinished jobs, and a second key's
single job is not starved: it starts behind at most the flooding key's running job and its one
queued "head" (service/fairness.py), within seconds. A flood of requests gets the rate limit's 429.
Both 429s are problem+json with a Retry-After.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.e2e.conftest import KEYS, E2EStack

pytestmark = pytest.mark.e2e
FLOOD = 16
LIMIT = 6  # the e2e stack's UDIC_MAX_ACTIVE_JOBS_PER_OWNER


def http(e2e: E2EStack, who: str) -> httpx.Client:
    return httpx.Client(base_url=e2e.url, headers={"Authorization": f"Bearer {KEYS[who]}"}, timeout=60)


@pytest.fixture(scope="module")
def kodak_png(datasets: Path) -> bytes:
    """A whole Kodak image (768x512): an encode of about a second."""
    buf = io.BytesIO()
    with Image.open(datasets / "kodak" / "kodim05.png") as im:
        im.convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@pytest.fixture
def carol(e2e: E2EStack) -> Iterator[httpx.Client]:
    c = http(e2e, "carol")
    yield c
    for job in c.get("/v1/jobs", params={"limit": 200}).json().get("jobs", []):
        if job["state"] in ("queued", "running"):
            c.delete(f"/v1/jobs/{job['id']}")
    c.close()


def assert_429(r: httpx.Response, kind: str) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1
    assert r.json()["type"] == f"urn:udic:problem:{kind}"


def test_flood_gets_429_while_another_keys_single_job_starts(
    e2e: E2EStack, carol: httpx.Client, kodak_png: bytes
) -> None:
    def upload(i: int) -> httpx.Response:
        return carol.post("/v1/jobs", files={"file": (f"flood{i}.png", kodak_png)}, data={"quality": "1"})

    with ThreadPoolExecutor(8) as pool:
        flood = list(pool.map(upload, range(FLOOD)))
    codes = [r.status_code for r in flood]
    # LIMIT unfinished at most at any time: more than LIMIT only if some ended during the flood
    assert LIMIT <= codes.count(202) <= LIMIT + 2 and codes.count(429) == FLOOD - codes.count(202), codes
    for r in flood:
        if r.status_code == 429:
            assert_429(r, "too-many-jobs")
    carols = [r.json()["id"] for r in flood if r.status_code == 202]

    with http(e2e, "bob") as bob:
        submitted = time.time()
        job_id = bob.post("/v1/jobs", files={"file": ("one.png", kodak_png)}, data={"quality": "1"}).json()["id"]
        deadline = time.monotonic() + 60
        while (job := bob.get(f"/v1/jobs/{job_id}").json())["state"] == "queued" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert job["started_at"] is not None, job
        waited = job["started_at"] - submitted
    started_before = [
        j["started_at"]
        for j in (carol.get(f"/v1/jobs/{i}").json() for i in carols)
        if j["started_at"] is not None and j["started_at"] < job["started_at"]
    ]
    # carol's running job and her one queued head at most; without the gate bob would be 7th in line
    assert len(started_before) <= 2, (started_before, job["started_at"])
    assert waited < 30, waited  # seconds, on a shared 2-core machine (about 2 encodes of 768x512)


def test_request_flood_is_rate_limited_per_key(e2e: E2EStack) -> None:
    with http(e2e, "carol") as carol, http(e2e, "bob") as bob:

        def poll(_: int) -> httpx.Response:
            return carol.get("/v1/jobs", params={"limit": 1})

        answers: list[httpx.Response] = []
        with ThreadPoolExecutor(8) as pool:
            while len(answers) < 2500 and all(r.status_code != 429 for r in answers):
                answers += pool.map(poll, range(100))  # 600 per 10 s window; a flood may straddle two
        codes = [r.status_code for r in answers]
        assert 429 in codes
        assert codes[: codes.index(429)].count(200) <= 2 * 600
        assert_429(answers[codes.index(429)], "rate-limited")
        assert bob.get("/v1/jobs").status_code == 200  # the limit is per key
        assert httpx.get(f"{e2e.url}/healthz").status_code == 200
