"""The README's "more than one machine" section, run as written (slow: about 3 minutes on 2 cores):
scripts/multi_host_demo.sh starts an S3 server, Redis, the API and two workers as separate processes
that share only Redis and the bucket, and its check exits non-zero unless both workers took encodes,
an adapter trained on one was used on the other, no upload was left and the in-use delete got 409."""

from __future__ import annotations

import os
import subprocess

import pytest

from service import stack as st
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_multi_host_demo_runs_as_written() -> None:
    try:
        st.redis_server_binary()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    ports = {"S3_PORT": st.free_port(), "REDIS_PORT": st.free_port(), "API_PORT": st.free_port()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}}
    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "multi_host_demo.sh")], env=env, capture_output=True, text=True, timeout=1500
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert '"delete_in_use"' in run.stdout
