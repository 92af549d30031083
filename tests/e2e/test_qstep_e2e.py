"""The adaptive quantisation steps through the service: a ``fast+qstep`` job over real HTTP, Redis and
the worker, and a bitstream with a corrupt step field refused by /v1/decode with a 422 problem."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from udic_client import Client

from codec.bitstream import Container, Field
from codec.coder import decode_image
from tests.e2e.conftest import KEYS, E2EStack

pytestmark = pytest.mark.e2e


def test_fast_qstep_job_and_a_corrupt_step_field(e2e: E2EStack, small_png: bytes) -> None:
    c = Client(e2e.url, api_key=KEYS["alice"], poll_interval=0.05)
    result = c.compress(small_png, quality=1, adaptation="fast+qstep", time_budget_s=5.0, progress=False)
    assert result.job.options["adaptation"] == "fast+qstep"
    local = decode_image(result.bitstream).rgb
    assert local.shape == (192, 256, 3)
    assert np.array_equal(np.asarray(c.decode(result.bitstream, format="pil").convert("RGB")), local)
    bad = Container.from_bytes(result.bitstream)
    bad.fields[Field.QSTEP_Y] = b"\x7f"  # code 127: off the +-48 range
    with httpx.Client(base_url=e2e.url, headers={"Authorization": f"Bearer {KEYS['alice']}"}, timeout=60) as raw:
        r = raw.post("/v1/decode", content=bad.to_bytes(), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:udic:problem:invalid-bitstream" and "quantisation step" in r.json()["detail"]
