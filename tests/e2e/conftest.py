"""A real stack for end-to-end tests: redis-server, the API under uvicorn, one worker process.

API keys are on (alice and bob), heartbeats are short (a killed worker is noticed in ~4 s), and
progress is written at every event so polling can see it.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service import stack as st

KEYS = {"alice": "key-alice-123", "bob": "key-bob-456", "carol": "key-carol-789", "dave": "key-dave-012"}


@dataclass
class E2EStack:
    url: str
    env: dict[str, str]
    data: Path
    redis: object
    api: object
    worker: object

    def restart_worker(self) -> None:
        st.stop(self.worker)  # type: ignore[arg-type]
        self.worker = st.start_worker(self.env, self.data / "worker.log")

    def kill_worker(self) -> None:
        os.killpg(self.worker.pid, 9)  # type: ignore[attr-defined]
        self.worker.wait(10)  # type: ignore[attr-defined]

    def restart_api(self) -> None:
        st.stop(self.api)  # type: ignore[arg-type]
        port = int(self.url.rsplit(":", 1)[1])
        self.api = st.start_api(port, self.env, self.data / "api.log")

    def restart_redis(self, down_s: float = 0.0) -> None:
        st.stop(self.redis)  # type: ignore[arg-type]
        time.sleep(down_s)
        port = int(self.env["UDIC_REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
        self.redis = st.start_redis(port, self.data / "redis", self.data / "redis.log")


@pytest.fixture(scope="session")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    try:
        st.redis_server_binary()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    data = tmp_path_factory.mktemp("stack")
    redis_port, api_port = st.free_port(), st.free_port()
    env = st.service_env(
        {
            "UDIC_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "UDIC_STORAGE_ROOT": str(data / "storage"),
            "UDIC_API_KEYS": ",".join(f"{k}:{o}" for o, k in KEYS.items()),
            "UDIC_HEARTBEAT_INTERVAL_S": "1",
            "UDIC_HEARTBEAT_GRACE_S": "3",
            "UDIC_PROGRESS_INTERVAL_S": "0",
            "UDIC_MAX_UPLOAD_BYTES": str(24 * 1024 * 1024),
            "UDIC_MAX_PIXELS": "12000000",
            "UDIC_JOB_RETRIES": "1",
            "UDIC_SWEEP_INTERVAL_S": "1",  # the storage sweep runs while the tests watch
            "UDIC_MAX_ACTIVE_JOBS_PER_OWNER": "6",
            "UDIC_WEBHOOK_SECRET": "e2e-webhook-secret",
            "UDIC_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
            "UDIC_WEBHOOK_BACKOFF_S": "0.3",
            "UDIC_WEBHOOK_MAX_ATTEMPTS": "3",
            "UDIC_WEBHOOK_TIMEOUT_S": "2",
        }
    )
    s = E2EStack(f"http://127.0.0.1:{api_port}", env, data, None, None, None)
    try:
        s.redis = st.start_redis(redis_port, data / "redis", data / "redis.log")
        s.api = st.start_api(api_port, env, data / "api.log")
        s.worker = st.start_worker(env, data / "worker.log")
        yield s
    finally:
        for proc in (s.worker, s.api, s.redis):
            st.stop(proc)  # type: ignore[arg-type]
        keep = os.environ.get("UDIC_KEEP_E2E_LOGS")
        if keep:
            shutil.copytree(data, keep, dirs_exist_ok=True)


@pytest.fixture(scope="session")
def big_png(datasets: Path) -> bytes:
    """Kodak 05 upscaled 3x (2304x1536): an encode that takes seconds, so progress and cancel can be seen."""
    with Image.open(datasets / "kodak" / "kodim05.png") as im:
        big = im.convert("RGB").resize((2304, 1536), Image.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@pytest.fixture(scope="session")
def small_png(datasets: Path) -> bytes:
    with Image.open(datasets / "kodak" / "kodim23.png") as im:
        arr = np.asarray(im.convert("RGB"))[100:292, 200:456]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
