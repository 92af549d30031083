"""Issue 16 end to end on the shared stack: the SDK's README example without Pillow, domain adapters
that live until deleted (and are not deleted while bitstreams need them), uploads gone when a job
ends, a job whose retries are used up by lost workers."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from udic_client import Client, CompressResult, ConflictError, Job, UdicError

from tests.e2e.conftest import KEYS, E2EStack

pytestmark = pytest.mark.e2e
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_sdk_readme_example_works_without_pillow(e2e: E2EStack, small_png: bytes, tmp_path: Path) -> None:
    """``pip install ./client`` brings httpx and pydantic, not Pillow: decode() must work with those."""
    src = tmp_path / "photo.png"
    src.write_bytes(small_png)
    code = f"""
import sys
sys.modules["PIL"] = None  # no Pillow, as after `pip install ./client`
from udic_client import Client
c = Client({e2e.url!r}, api_key={KEYS["alice"]!r}, poll_interval=0.05)
result = c.compress({str(src)!r}, quality=3, progress=False)
print(result.metrics.bpp, result.metrics.psnr)
image = c.decode(result.bitstream)
assert image[:8] == {PNG_MAGIC!r}, type(image)
assert c.download_image(result.job.id)[:8] == {PNG_MAGIC!r}
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def _client(e2e: E2EStack, who: str = "alice") -> Client:
    return Client(e2e.url, api_key=KEYS[who], poll_interval=0.05)


def _raw(e2e: E2EStack, who: str = "alice") -> httpx.Client:
    return httpx.Client(base_url=e2e.url, headers={"Authorization": f"Bearer {KEYS[who]}"}, timeout=60)


def _wait(c: Client, job_id: str, states: set[str], timeout: float = 120, attempts: int = 0) -> Job:
    """The job once it is in one of ``states`` (and, with ``attempts``, its worker has started that attempt)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.job(job_id)
        if job.state in states and job.attempts >= attempts:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}; last {job.state}")


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_domain_adapter_lives_until_deleted_never_while_bitstreams_need_it(e2e: E2EStack) -> None:
    from codec.datasets import bench_images

    samples = [_png(b.rgb[:128, :128]) for b in bench_images("line", 5)]
    c = _client(e2e)
    trained = c.train_domain("lifetime", samples, steps=8, stage2_steps=2, progress=False, timeout=300)
    assert trained.domain is not None
    domain_id = trained.domain["id"]
    result = c.compress(samples[0], quality=3, domain=domain_id, progress=False)
    assert result.metrics.domain == domain_id
    storage = e2e.data / "storage"
    ref = storage / "refs" / domain_id / result.job.id
    assert ref.exists() and (storage / "domains" / f"{domain_id}.pt").exists()
    assert not (storage / "uploads" / result.job.id).exists()  # the upload ended with its job

    with _raw(e2e) as alice, _raw(e2e, "bob") as bob:
        refused = alice.delete(f"/v1/domains/{domain_id}")
        assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
        body = refused.json()
        assert body["type"] == "urn:udic:problem:domain-in-use" and body["bitstreams"] == 1, body
        assert "would stop decoding" in body["detail"] and body["in_use_until"].endswith("Z")
        assert bob.delete(f"/v1/domains/{domain_id}").status_code == 404  # not bob's
        assert c.domain(domain_id)["id"] == domain_id
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(c.decode(result.bitstream)))), _decoded(e2e, result))

        # once the bitstream's retention is over (its ref aged past it), the adapter can go
        old = time.time() - 8 * 24 * 3600
        os.utime(ref, (old, old))
        assert alice.delete(f"/v1/domains/{domain_id}").status_code == 204
        assert alice.get(f"/v1/domains/{domain_id}").status_code == 404
        assert alice.delete(f"/v1/domains/{domain_id}").status_code == 404
    assert domain_id not in {d["id"] for d in c.domains()}
    assert not (storage / "domains" / f"{domain_id}.pt").exists() and not ref.exists()
    with pytest.raises(UdicError):  # what the 409 warned about: that bitstream no longer decodes
        c.decode(result.bitstream)


def _decoded(e2e: E2EStack, result: CompressResult) -> np.ndarray:
    from codec.coder import decode_image
    from codec.zoo import Registry

    return decode_image(result.bitstream, registry=Registry(domains_dir=e2e.data / "storage" / "domains")).rgb


def test_job_whose_retries_are_used_up_ends_failed_worker_lost(e2e: E2EStack, big_png: bytes) -> None:
    """UDIC_JOB_RETRIES=1: the first lost worker re-queues the job, the second fails it."""
    c = _client(e2e)
    job = c.submit(big_png, quality=4)
    try:
        _wait(c, job.id, {"running"}, attempts=1)
        e2e.kill_worker()
        requeued = _wait(c, job.id, {"queued"}, timeout=60)
        assert requeued.error is not None and requeued.error.type == "worker-lost"
        e2e.restart_worker()
        _wait(c, job.id, {"running"}, timeout=120, attempts=2)
        e2e.kill_worker()
        failed = _wait(c, job.id, {"failed"}, timeout=60)
    finally:
        e2e.restart_worker()
    assert failed.error is not None and failed.error.type == "worker-lost" and failed.attempts == 2, failed
    assert not (e2e.data / "storage" / "uploads" / job.id).exists()  # the job ended: its upload is gone
    with pytest.raises(ConflictError):
        c.download(job.id)


def test_redis_restart_during_a_running_job_loses_no_stored_bitstream(
    e2e: E2EStack, small_png: bytes, big_png: bytes
) -> None:
    """Records are in Redis (AOF), bytes in the storage: Redis down for 6 s mid-job loses neither.
    The worker rides the outage out (it once died here, and every later job stayed queued), the
    running job ends finished with its bitstream stored, although the outage outlasted its
    heartbeat grace (4 s here) and it was re-queued as abandoned (that second run is skipped),
    and the same worker goes on taking jobs."""
    c = _client(e2e)
    before = c.compress(small_png, quality=2, progress=False)
    job = c.submit(big_png, quality=3)
    _wait(c, job.id, {"running"}, attempts=1)
    e2e.restart_redis(down_s=6.0)
    assert c.download(before.job.id) == before.bitstream and c.job(before.job.id).state == "finished"
    done = c.wait(job.id, timeout=300)
    assert done.state == "finished", done
    data = c.download(job.id)
    assert data == (e2e.data / "storage" / "bitstreams" / f"{job.id}.udic").read_bytes()
    assert c.download(before.job.id) == before.bitstream
    after = c.compress(small_png, quality=1, progress=False, timeout=120)
    assert after.job.state == "finished" and e2e.worker.poll() is None  # type: ignore[attr-defined]


def test_running_api_sweeps_periodically_and_never_adapters(e2e: E2EStack) -> None:
    """Blobs that expire while the API runs are deleted without a restart (UDIC_SWEEP_INTERVAL_S=1
    here), each deletion logged; adapters never are, however old."""
    root = e2e.data / "storage"
    for key in ("bitstreams/expired.udic", "bitstreams/fresh.udic", "domains/ancient-0123456789ab.pt"):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b"x")
    for key, age in (("bitstreams/expired.udic", 8 * 24 * 3600), ("domains/ancient-0123456789ab.pt", 3e7)):
        t = time.time() - age
        os.utime(root / key, (t, t))
    try:
        deadline = time.monotonic() + 30
        while (root / "bitstreams" / "expired.udic").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not (root / "bitstreams" / "expired.udic").exists(), "the running API never swept"
        assert (root / "bitstreams" / "fresh.udic").exists()
        assert (root / "domains" / "ancient-0123456789ab.pt").exists()
    finally:  # not a real adapter: the other tests list the adapters
        (root / "domains" / "ancient-0123456789ab.pt").unlink(missing_ok=True)
        (root / "bitstreams" / "fresh.udic").unlink(missing_ok=True)
    log = (e2e.data / "api.log").read_text()
    assert '"key": "bitstreams/expired.udic", "reason": "retention"' in log  # each deletion logged
