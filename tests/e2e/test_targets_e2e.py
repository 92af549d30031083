"""Rate targets end to end: form fields -> job -> worker -> metrics, through real HTTP, Redis and the SDK."""

from __future__ import annotations

import io
import math

import httpx
import numpy as np
import pytest
from PIL import Image
from udic_client import Client, ValidationError

from codec.coder import decode_image
from tests.e2e.conftest import KEYS, E2EStack

pytestmark = pytest.mark.e2e


def client(e2e: E2EStack) -> Client:
    return Client(e2e.url, api_key=KEYS["alice"], poll_interval=0.05)


def test_target_bytes_through_the_api(e2e: E2EStack, small_png: bytes) -> None:
    c = client(e2e)
    plain = c.compress(small_png, quality=3.5, progress=False)
    target = round(plain.metrics.bytes * 0.9)
    result = c.compress(small_png, target_bytes=target, progress=False)
    m = result.metrics
    assert m.target is not None
    assert m.bytes == len(result.bitstream) == m.target.reached
    assert 0.97 * target <= m.bytes <= target
    assert (m.target.kind, m.target.status, m.target.met) == ("bytes", "reached", True)
    assert result.job.options["target_bytes"] == target and result.job.options["quality"] is None
    assert 1 <= m.target.probes <= 8 and m.quality == pytest.approx(m.target.level + 1, abs=1e-4)
    assert decode_image(result.bitstream).rgb.shape == (192, 256, 3)
    # unreachable: the closest file, flagged, not a failure
    low = c.compress(small_png, target_bytes=50, progress=False).metrics
    assert low.target is not None and (low.target.status, low.target.met) == ("below-range", False)


def test_target_psnr_and_bpp_through_the_sdk(e2e: E2EStack, small_png: bytes) -> None:
    c = client(e2e)
    m = c.compress(small_png, target_psnr=27.0, progress=False).metrics
    assert m.target is not None and m.psnr is not None
    assert m.target.status != "reached" or m.psnr >= 27.0
    m = c.compress(small_png, target_bpp=1.0, progress=False).metrics
    assert m.target is not None and m.bpp <= 1.0 and math.isclose(m.bpp, m.bytes * 8 / (256 * 192))


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"target_bytes": "5000", "quality": "3"}, "invalid-target"),
        ({"target_bpp": "0.5", "lambda": "0.01"}, "invalid-target"),
        ({"target_bytes": "5000", "target_psnr": "30"}, "invalid-target"),
        ({"target_bpp": "nan"}, None),
        ({"target_bpp": "inf"}, None),
        ({"target_psnr": "5"}, "invalid-target"),
        ({"target_psnr": "nan"}, "invalid-target"),
        ({"target_bytes": "-3"}, "validation-error"),
        ({"target_bytes": "12.5"}, "validation-error"),
        ({"target_bytes": "lots"}, "validation-error"),
    ],
)
def test_impossible_targets_are_422_problems(
    e2e: E2EStack, small_png: bytes, fields: dict[str, str], kind: str
) -> None:
    with httpx.Client(base_url=e2e.url, headers={"Authorization": f"Bearer {KEYS['alice']}"}, timeout=60) as raw:
        r = raw.post("/v1/jobs", files={"file": ("a.png", small_png, "image/png")}, data=fields)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    if kind is not None:
        assert r.json()["type"] == f"urn:udic:problem:{kind}"
    assert "Traceback" not in r.text


def test_sdk_refusal_is_a_validation_error(e2e: E2EStack) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, format="PNG")
    with pytest.raises(ValidationError) as exc:
        client(e2e).submit(buf.getvalue(), quality=2, target_bytes=1000)
    assert exc.value.kind == "invalid-target"
