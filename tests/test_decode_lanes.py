"""Decoding in the API without head-of-line blocking (issue 12, point 3), against the real app
(FastAPI TestClient, its lifespan starting the decoder processes) and a real redis-server.

"Large" is made cheap by configuration: with a small-lane limit of 256x256 padded pixels, a Kodak
image (768x512) decodes in the large lane and a 128x96 crop in the small one.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from codec.coder import decode_image, encode
from service.core.config import Settings
from service.core.errors import ProblemError
from service.decode_lanes import DecoderBusy, DecoderFailed, Lane
from service.decoding import Decoder, ImageCache
from service.main import create_app
from udic_jobs import EncodePayload, JobRecord, JobStore
from udic_jobs.storage import FileSystemStorage, bitstream_key

OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def bitstreams(kodak_path: Path, kodak_crop: np.ndarray) -> dict[str, bytes]:
    with Image.open(kodak_path) as im:
        large = encode(im.convert("RGB"), quality=3)
    return {"large": large, "small": encode(Image.fromarray(kodak_crop), quality=3)}


def _settings(redis_url: str, root: Path, **overrides: Any) -> Settings:
    return Settings(redis_url=redis_url, storage_root=root, log_json=False, **overrides)


@pytest.fixture(scope="module")
def lanes_client(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One decoder process per lane; 256x256 padded pixels is the small lane's limit. Waits may be
    long (three Kodak decodes queue in one large lane on a busy machine): these tests are about
    which lane a decode takes, the 503 after a wait has its own test."""
    settings = _settings(
        redis_url, tmp_path_factory.mktemp("storage"), decode_small_max_pixels=256 * 256, decode_wait_timeout_s=120
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _post(client: TestClient, data: bytes) -> tuple[int, float, float]:
    t = time.perf_counter()
    r = client.post("/v1/decode", content=data, headers=OCTET)
    return r.status_code, t, time.perf_counter()


def test_small_decode_does_not_wait_behind_large(lanes_client: TestClient, bitstreams: dict[str, bytes]) -> None:
    for data in bitstreams.values():  # the first decode of each lane waits for its process to start
        assert lanes_client.post("/v1/decode", content=data, headers=OCTET).status_code == 200
    with ThreadPoolExecutor(4) as pool:
        larges = [pool.submit(_post, lanes_client, bitstreams["large"]) for _ in range(3)]
        time.sleep(0.2)  # the first large decode runs, two wait in the large lane
        small = pool.submit(_post, lanes_client, bitstreams["small"]).result()
        large_results = [f.result() for f in larges]
    assert small[0] == 200 and all(r[0] == 200 for r in large_results)
    last_large_end = max(r[2] for r in large_results)
    # one large lane process: the three large decodes end one after another; the small one, sent
    # while they run, has its own process and ends first
    assert small[2] < last_large_end, (small, large_results)
    assert small[2] - small[1] < (last_large_end - small[1]) / 2


def test_saturated_lane_answers_503_with_retry_after(
    redis_url: str, tmp_path: Path, bitstreams: dict[str, bytes]
) -> None:
    """One small-lane process, a 50 ms wait limit: a second decode while one runs is refused."""
    settings = _settings(
        redis_url, tmp_path, decode_small_workers=1, decode_wait_timeout_s=0.05, decode_small_max_pixels=1_000_000
    )
    with TestClient(create_app(settings)) as client, ThreadPoolExecutor(2) as pool:
        assert client.post("/v1/decode", content=bitstreams["small"], headers=OCTET).status_code == 200  # warm
        first = pool.submit(client.post, "/v1/decode", content=bitstreams["large"], headers=OCTET)
        time.sleep(0.1)
        t = time.perf_counter()
        busy = client.post("/v1/decode", content=bitstreams["small"], headers=OCTET)
        waited = time.perf_counter() - t
        assert first.result().status_code == 200
    assert busy.status_code == 503, busy.text
    assert busy.headers["content-type"].startswith("application/problem+json")
    assert int(busy.headers["retry-after"]) >= settings.retry_after_s
    body = busy.json()
    assert body["type"] == "urn:udic:problem:decoder-busy" and body["lane"] == "small" and body["status"] == 503
    assert waited < 2.0  # answered after the wait limit, not after the running decode


def test_over_memory_budget_is_refused_before_any_decode(tmp_path: Path, bitstreams: dict[str, bytes]) -> None:
    """A decode whose estimate exceeds the large lane's budget can never run: 422 at once."""
    settings = Settings(
        storage_root=tmp_path, decode_small_max_pixels=256 * 256, decode_bytes_per_pixel=100, decode_memory_budget_mb=20
    )
    dec = Decoder(settings)  # never started: no process is needed to refuse
    try:
        with pytest.raises(ProblemError) as err:
            asyncio.run(dec.decode(bitstreams["large"]))
    finally:
        dec.close()
    assert err.value.status == 422 and err.value.kind == "image-too-large" and "MiB" in err.value.detail
    assert dec.decodes == 0


def test_tiled_files_are_admitted_with_the_tiled_estimate(tmp_path: Path, kodak_crop: np.ndarray) -> None:
    """The estimate follows the header: a file with the TILING field is admitted at the tiled bytes
    per pixel plus the tiles' working set (measured 20-26 B/px), any other file at the whole-image
    figure; the same image coded both ways shows the difference."""
    from codec.coder import PAD_MULTIPLE
    from codec.tiling import TileLayout, TilingPolicy, tiling_policy
    from service.decode_lanes import TILE_WINDOW_BYTES_PER_PIXEL
    from service.decoding import plan_decode

    img = Image.fromarray(kodak_crop)
    with tiling_policy(TilingPolicy(threshold_pixels=0, layout=TileLayout(tile=4, halo=2))):
        tiled = encode(img, quality=3)
    whole = encode(img, quality=3)
    settings = Settings(storage_root=tmp_path, decode_bytes_per_pixel=200, decode_tiled_bytes_per_pixel=30)
    h, w = kodak_crop.shape[:2]
    padded = (w + (-w) % PAD_MULTIPLE) * (h + (-h) % PAD_MULTIPLE)
    window = ((4 + 2 * 2) * 16) ** 2
    assert plan_decode(whole, settings).cost_bytes == padded * 200
    tiles_at_once = os.cpu_count() or 1
    assert plan_decode(tiled, settings).cost_bytes == padded * 30 + tiles_at_once * window * TILE_WINDOW_BYTES_PER_PIXEL


def test_a_corrupt_tiling_field_is_refused_with_the_estimate(tmp_path: Path, kodak_crop: np.ndarray) -> None:
    from codec.bitstream import Container, Field
    from codec.tiling import TileLayout, TilingPolicy, tiling_policy
    from service.decoding import plan_decode

    with tiling_policy(TilingPolicy(threshold_pixels=0, layout=TileLayout(tile=4, halo=2))):
        c = Container.from_bytes(encode(Image.fromarray(kodak_crop), quality=3))
    c.fields[Field.TILING] = b"\x00\x00"
    with pytest.raises(ProblemError) as err:
        plan_decode(c.to_bytes(), Settings(storage_root=tmp_path))
    assert err.value.status == 422


def _finished_job(client: TestClient, data: bytes, finished_at: float | None = None) -> str:
    res = client.app.state.resources  # type: ignore[attr-defined]
    rec = JobRecord.queued(f"job{time.monotonic_ns()}", "anonymous", EncodePayload())
    store: JobStore = res.store
    store.create(rec)
    res.storage.put(bitstream_key(rec.id), data)
    store.mark_finished(rec.id, bitstream_key=bitstream_key(rec.id))
    if finished_at is not None:
        store.update(rec.id, finished_at=finished_at)
    return rec.id


def test_stored_image_is_cached_and_expires_with_its_bitstream(
    lanes_client: TestClient, bitstreams: dict[str, bytes]
) -> None:
    dec: Decoder = lanes_client.app.state.decoder  # type: ignore[attr-defined]
    data = bitstreams["small"]
    job = _finished_job(lanes_client, data)
    before = dec.decodes
    first = lanes_client.get(f"/v1/bitstreams/{job}/image")
    assert first.status_code == 200 and dec.decodes == before + 1
    rgb = np.asarray(Image.open(io.BytesIO(first.content)).convert("RGB"))
    assert np.array_equal(rgb, decode_image(data).rgb)
    second = lanes_client.get(f"/v1/bitstreams/{job}/image")
    assert second.status_code == 200 and second.content == first.content and dec.decodes == before + 1

    # concurrent first views of another image share one decode
    other = _finished_job(lanes_client, data)
    with ThreadPoolExecutor(3) as pool:
        views = list(pool.map(lambda _: lanes_client.get(f"/v1/bitstreams/{other}/image"), range(3)))
    assert all(v.status_code == 200 for v in views) and dec.decodes == before + 2

    # the bitstream removed (retention): the cached image goes with it
    storage: FileSystemStorage = lanes_client.app.state.resources.storage  # type: ignore[attr-defined]
    storage.delete(bitstream_key(job))
    gone = lanes_client.get(f"/v1/bitstreams/{job}/image")
    assert gone.status_code == 410 and dec.cache.get(job) is None

    # a bitstream about to reach its retention: its cached image expires at the same moment
    retention = lanes_client.app.state.resources.settings.retention_s  # type: ignore[attr-defined]
    soon = _finished_job(lanes_client, data, finished_at=time.time() - retention + 1.0)
    assert lanes_client.get(f"/v1/bitstreams/{soon}/image").status_code == 200
    assert dec.cache.get(soon) is not None
    time.sleep(1.2)
    assert dec.cache.get(soon) is None


def test_image_cache_is_bounded_lru() -> None:
    cache = ImageCache(max_bytes=10)
    far = time.time() + 60
    cache.put("a", b"1234", far)
    cache.put("b", b"5678", far)
    assert cache.get("a") == b"1234"  # a is now the most recent
    cache.put("c", b"90ab", far)  # evicts b
    assert cache.get("b") is None and cache.get("a") == b"1234" and cache.used == 8
    cache.put("big", b"x" * 11, far)  # larger than the cache: not kept
    assert cache.get("big") is None and len(cache) == 2


def test_lane_bounds_its_queue_and_survives_a_dead_process() -> None:
    """Lane mechanics with plain builtins (no model): a full queue answers at once, and a process
    that dies (as under the OOM killer) fails only its own request; the lane starts a new pool."""

    async def scenario() -> None:
        lane = Lane(
            "test",
            1,
            memory_bytes=None,
            queue_depth=0,
            wait_timeout_s=5,
            min_retry_after_s=1,
            initializer=int,
            initargs=(),
        )
        try:
            assert (await lane.run(abs, -2, cost_bytes=0, pixels=1))[0] == 2  # the process is up
            running = asyncio.ensure_future(lane.run(time.sleep, 1.0, cost_bytes=0, pixels=1))
            await asyncio.sleep(0.1)
            t = time.perf_counter()
            with pytest.raises(DecoderBusy) as busy:
                await lane.run(abs, -3, cost_bytes=0, pixels=1)
            assert time.perf_counter() - t < 0.5 and busy.value.retry_after_s >= 1
            await running
            with pytest.raises(DecoderFailed):
                await lane.run(os._exit, 3, cost_bytes=0, pixels=1)
            assert (await lane.run(abs, -4, cost_bytes=0, pixels=1))[0] == 4
        finally:
            lane.close()

    asyncio.run(scenario())


LANE_SCRIPT = """
import time
from service.decode_lanes import Lane
lane = Lane(
    "t", 2, memory_bytes=None, queue_depth=1, wait_timeout_s=5, min_retry_after_s=1, initializer=int, initargs=()
)
for f in lane.warm():
    f.result()
print("ready", flush=True)
time.sleep(60)
"""


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    return out


def test_decoder_processes_end_with_a_killed_api() -> None:
    """SIGKILL of the API (no shutdown at all) must not leave decoder processes behind."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", LANE_SCRIPT], stdout=subprocess.PIPE, cwd=Path(__file__).parent.parent
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        children = _children(proc.pid)
        assert len(children) >= 2  # the two decoder processes (and spawn's resource tracker)
    finally:
        proc.kill()
        proc.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
        time.sleep(0.2)
    left = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    for pid in left:  # ours: clean up before failing
        os.kill(pid, 9)
    assert not left
