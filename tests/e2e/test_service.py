"""End to end through the SDK: real Redis, real HTTP, real worker, real bitstreams."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from PIL import Image
from udic_client import (
    Client,
    ConflictError,
    ImageTooLargeError,
    InvalidBitstreamError,
    InvalidImageError,
    JobFailedError,
    NotFoundError,
    PayloadTooLargeError,
    UnauthorizedError,
    ValidationError,
)

from codec.coder import decode_image
from tests.e2e.conftest import KEYS, E2EStack
from tests.imagefactory import raw_png

pytestmark = pytest.mark.e2e


def client(e2e: E2EStack, who: str = "alice", **kw: object) -> Client:
    return Client(e2e.url, api_key=KEYS[who], poll_interval=0.05, **kw)  # type: ignore[arg-type]


def wait_state(c: Client, job_id: str, states: set[str], timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.job(job_id)
        if job.state in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}; last {job.state}")


def test_upload_progress_finish_download_decode(e2e: E2EStack, big_png: bytes) -> None:
    c = client(e2e)
    seen: list[tuple[str, str | None]] = []
    result = c.compress(big_png, quality=3, progress=lambda j: seen.append((j.state, j.progress and j.progress.stage)))
    assert result.job.state == "finished"
    assert any(state == "running" and stage is not None for state, stage in seen), seen  # progress was visible
    m = result.metrics
    assert (m.width, m.height) == (2304, 1536)
    assert m.bytes == len(result.bitstream)
    assert m.bpp == pytest.approx(len(result.bitstream) * 8 / (2304 * 1536))
    # the service's decodes equal the codec's own decode of the downloaded bytes, pixel for pixel
    local = decode_image(result.bitstream).rgb
    assert np.array_equal(np.asarray(c.decode(result.bitstream, format="pil").convert("RGB")), local)
    assert np.array_equal(np.asarray(c.download_image(result.job.id, format="pil").convert("RGB")), local)
    # the reported PSNR is that of the canonical (bit-exact) pixels; the default decode (sub-pixel
    # last layer, all cores) is within one level of them at a few samples
    exact = decode_image(result.bitstream, bit_exact=True).rgb
    assert np.abs(exact.astype(int) - local.astype(int)).max() <= 1
    original = np.asarray(Image.open(__import__("io").BytesIO(big_png)).convert("RGB")).astype(float)
    psnr = 10 * np.log10(255**2 / np.mean((exact.astype(float) - original) ** 2))
    assert m.psnr == pytest.approx(psnr, abs=1e-6)


def test_adaptive_job_shows_its_stages_and_never_loses(e2e: E2EStack, small_png: bytes) -> None:
    c = client(e2e)
    stages: set[str] = set()
    result = c.compress(
        small_png,
        quality=3,
        adaptation="fast",
        time_budget_s=6,
        progress=lambda j: stages.add(j.progress.stage if j.progress else ""),
    )
    m = result.metrics
    assert m.adaptation == "fast" and m.adaptation_choice in ("plain", "latents", "latents+adapters")
    assert m.rd_saving_pct >= 0.0
    assert "latent-refinement" in stages  # the optimisation's progress reached the client
    assert np.array_equal(
        np.asarray(c.decode(result.bitstream, format="pil").convert("RGB")), decode_image(result.bitstream).rgb
    )
    with pytest.raises(ValidationError):
        c.submit(small_png, adaptation="turbo")


def test_cancel_queued_and_running(e2e: E2EStack, big_png: bytes) -> None:
    c = client(e2e)
    running = c.submit(big_png, quality=1)
    queued = c.submit(big_png, quality=2)
    wait_state(c, running.id, {"running"})
    assert c.cancel(queued.id).state == "cancelled"
    c.cancel(running.id)
    assert wait_state(c, running.id, {"cancelled", "finished"}).state == "cancelled"
    time.sleep(0.5)
    assert c.job(queued.id).state == "cancelled"  # never ran
    with pytest.raises(ConflictError):
        c.download(queued.id)
    # cancelling an ended job is refused clearly; a cancelled one stays cancelled
    assert c.cancel(queued.id).state == "cancelled"
    done = c.compress(b"" + _tiny_png(), quality=1, progress=False)
    with pytest.raises(ConflictError) as exc:
        c.cancel(done.job.id)
    assert exc.value.kind == "job-not-cancellable"


def _tiny_png() -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_failure_is_reported_with_a_reason(e2e: E2EStack, big_png: bytes, small_png: bytes) -> None:
    c = client(e2e)
    blocker = c.submit(big_png, quality=1)  # keeps the single worker busy
    victim = c.submit(small_png, quality=2)
    (e2e.data / "storage" / "uploads" / victim.id).unlink()  # the upload is lost before the worker gets to it
    with pytest.raises(JobFailedError) as exc:
        c.wait(victim.id, timeout=180)
    assert exc.value.job.error.type == "invalid-input"
    assert "no longer in storage" in exc.value.job.error.detail
    c.wait(blocker.id, timeout=180)


def test_idempotency_key(e2e: E2EStack, small_png: bytes) -> None:
    c = client(e2e)
    a = c.submit(small_png, quality=2, idempotency_key="order-42")
    b = c.submit(small_png, quality=2, idempotency_key="order-42")
    assert a.id == b.id
    with pytest.raises(ConflictError) as exc:
        c.submit(small_png, quality=3, idempotency_key="order-42")
    assert exc.value.kind == "idempotency-key-reused"
    other = client(e2e, "bob").submit(small_png, quality=2, idempotency_key="order-42")
    assert other.id != a.id  # keys are per owner
    c.wait(a.id, timeout=120)


def test_worker_killed_mid_job_is_retried_not_stuck(e2e: E2EStack, big_png: bytes) -> None:
    c = client(e2e)
    job = c.submit(big_png, quality=4)
    wait_state(c, job.id, {"running"})
    e2e.kill_worker()
    # the heartbeat lapses (1 s interval + 3 s grace): the job goes back to the queue, with a reason
    requeued = wait_state(c, job.id, {"queued"}, timeout=60)
    assert requeued.error is not None and requeued.error.type == "worker-lost"
    e2e.restart_worker()
    done = c.wait(job.id, timeout=180)
    assert done.state == "finished" and done.attempts == 2


def test_restarts_lose_nothing(e2e: E2EStack, small_png: bytes) -> None:
    c = client(e2e)
    result = c.compress(small_png, quality=5, progress=False)
    e2e.restart_api()
    e2e.restart_redis()  # AOF: records survive
    job = c.job(result.job.id)
    assert job.state == "finished" and job.metrics == result.metrics
    assert c.download(job.id) == result.bitstream


def test_bad_inputs_get_problem_json_and_server_keeps_serving(e2e: E2EStack) -> None:
    c = client(e2e)
    raw = httpx.Client(base_url=e2e.url, headers={"Authorization": f"Bearer {KEYS['alice']}"}, timeout=60)
    good = _tiny_png()
    cases = [
        (lambda: c.submit(b""), InvalidImageError, "invalid-image"),
        (lambda: c.submit(b"this is not an image"), InvalidImageError, "invalid-image"),
        (lambda: c.submit(good[: len(good) // 2]), InvalidImageError, "invalid-image"),
        (lambda: c.submit(raw_png(20000, 20000, 8, 2, b"\x00" * 4096)), ImageTooLargeError, "image-too-large"),
        (lambda: c.submit(b"\x00" * (25 * 1024 * 1024)), PayloadTooLargeError, "payload-too-large"),
        (lambda: c.decode(b"garbage, not a bitstream"), InvalidBitstreamError, "not-a-bitstream"),
        (lambda: c.decode(b""), InvalidBitstreamError, "empty-bitstream"),
        (lambda: c.job("0123456789abcdef"), NotFoundError, "job-not-found"),
        (lambda: c.submit(good, quality=42), ValidationError, "invalid-quality"),
        (lambda: c.submit(good, model="acme-9000"), ValidationError, "unknown-model"),
        (lambda: Client(e2e.url, api_key="wrong").job("x"), UnauthorizedError, "unauthorized"),
        (lambda: Client(e2e.url).submit(good), UnauthorizedError, "unauthorized"),
    ]
    for call, exc_type, kind in cases:
        with pytest.raises(exc_type) as exc:
            call()
        assert exc.value.kind == kind, (kind, exc.value)
        assert exc.value.status < 500
    r = raw.post("/v1/jobs")  # empty body, no multipart at all
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in r.text
    # the server is still fine
    assert raw.get("/healthz").status_code == 200
    assert c.compress(good, quality=1, progress=False).job.state == "finished"


def test_keys_see_only_their_own_jobs(e2e: E2EStack, small_png: bytes) -> None:
    alice, bob = client(e2e, "alice"), client(e2e, "bob")
    job = alice.compress(small_png, quality=1, progress=False).job
    with pytest.raises(NotFoundError):
        bob.job(job.id)
    with pytest.raises(NotFoundError):
        bob.download(job.id)
    assert job.id in {j.id for j in alice.jobs()}
    assert job.id not in {j.id for j in bob.jobs()}
    assert httpx.get(f"{e2e.url}/healthz").status_code == 200  # health needs no key
    assert httpx.get(f"{e2e.url}/metrics").status_code == 401


def test_metrics_and_openapi(e2e: E2EStack) -> None:
    h = {"Authorization": f"Bearer {KEYS['alice']}"}
    text = httpx.get(f"{e2e.url}/metrics", headers=h).text
    for name in (
        "udic_jobs_total",
        "udic_jobs_in_state",
        "udic_queue_length",
        "udic_encode_seconds_bucket",
        "udic_decode_seconds_bucket",
    ):
        assert name in text
    spec = httpx.get(f"{e2e.url}/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/bitstreams/{job_id}", "/v1/decode", "/readyz"} <= set(spec["paths"])
    assert httpx.get(f"{e2e.url}/readyz").json()["status"] == "ready"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_client_same_surface(e2e: E2EStack, small_png: bytes) -> None:
    from udic_client import AsyncClient

    async with AsyncClient(e2e.url, api_key=KEYS["alice"], poll_interval=0.05) as ac:
        result = await ac.compress(small_png, quality=2)
        img = await ac.decode(result.bitstream, format="pil")
        assert img.size == (256, 192)
        assert (await ac.job(result.job.id)).state == "finished"


def test_domain_adapter_trained_listed_used_and_private(e2e: E2EStack, datasets) -> None:  # type: ignore[no-untyped-def]
    import io

    from codec.datasets import bench_images

    def png(rgb: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        return buf.getvalue()

    samples = [png(b.rgb[:128, :128]) for b in bench_images("screen", 5)]
    c, bob = client(e2e), client(e2e, "bob")
    with pytest.raises(ValidationError) as exc:
        c.train_domain("too-few", samples[:3], steps=5, stage2_steps=1, progress=False)
    assert exc.value.kind == "invalid-samples"
    uploads = e2e.data / "storage" / "uploads"
    before = sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []
    with pytest.raises(InvalidImageError) as bad:
        c.train_domain("bad-sample", [*samples[:4], b"not an image"], steps=5, stage2_steps=1, progress=False)
    assert "sample 5" in bad.value.detail
    after = sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []
    assert after == before  # nothing stored for a refused request
    job = c.train_domain("screens", samples, steps=12, stage2_steps=3, progress=False, timeout=300)
    assert job.state == "finished" and job.domain is not None
    domain_id = job.domain["id"]
    assert domain_id.startswith("screens-") and isinstance(job.domain["gain_pct"], float)
    assert domain_id in {d["id"] for d in c.domains()}
    assert c.domain(domain_id)["n_val"] == 1
    assert domain_id not in {d["id"] for d in bob.domains()}  # a key sees only its own adapters
    with pytest.raises(NotFoundError):
        bob.domain(domain_id)
    with pytest.raises(ValidationError):
        bob.submit(samples[0], domain=domain_id)
    result = c.compress(samples[0], quality=3, domain=domain_id, progress=False)
    assert result.metrics.domain == domain_id
    # decoding goes through the API's cache of base models with domain adapters applied
    assert np.array_equal(
        np.asarray(c.decode(result.bitstream, format="pil").convert("RGB")),
        decode_image_with_domains(e2e, result.bitstream),
    )
    auto = c.compress(samples[1], quality=3, domain="auto", progress=False)
    assert auto.metrics.domain in (None, domain_id)


def decode_image_with_domains(e2e: E2EStack, data: bytes) -> np.ndarray:
    from codec.zoo import Registry

    return decode_image(data, registry=Registry(domains_dir=e2e.data / "storage" / "domains")).rgb
