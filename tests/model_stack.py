"""A minimal real stack (Redis, API, one worker) for tests that need the service with extra models.

The e2e tests of the zoo, context-model and WACNN adaptations each start one with their own
``UDIC_CHECKPOINTS`` or ``TORCH_HOME``; this is the one place that knows how.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service import stack as st


@contextmanager
def model_stack(data: Path, extra_env: dict[str, str]) -> Iterator[str]:
    """Start Redis, the API and a worker with ``extra_env``; yield the API's URL; stop them all.

    Skips the test where no ``redis-server`` can be found."""
    try:
        st.redis_server_binary()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    redis_port, api_port = st.free_port(), st.free_port()
    env = st.service_env(
        {
            "UDIC_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "UDIC_STORAGE_ROOT": str(data / "storage"),
            "UDIC_API_KEYS": "",
            "UDIC_PROGRESS_INTERVAL_S": "0",
            **extra_env,
        }
    )
    procs = [st.start_redis(redis_port, data / "redis", data / "redis.log")]
    try:
        procs.append(st.start_api(api_port, env, data / "api.log"))
        procs.append(st.start_worker(env, data / "worker.log"))
        yield f"http://127.0.0.1:{api_port}"
    finally:
        for proc in reversed(procs):
            st.stop(proc)
