"""Regions of interest end to end: form fields and mask upload -> job -> worker -> an ordinary bitstream."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image
from udic_client import Client

from codec.coder import decode_image
from tests.e2e.conftest import KEYS, E2EStack

pytestmark = pytest.mark.e2e

W, H = 256, 192  # small_png's size


def png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def test_roi_jobs_auto_rects_and_mask(e2e: E2EStack, small_png: bytes) -> None:
    c = Client(e2e.url, api_key=KEYS["alice"], poll_interval=0.05)
    mask = np.zeros((H, W), np.uint8)
    mask[40:120, 60:200] = 255
    mask[:, :10] = 40
    rects = [{"x": 60, "y": 40, "w": 140, "h": 80, "weight": 6}]
    for roi, kind in (("auto", "auto"), (rects, "rects"), (png(mask), "grid")):
        result = c.compress(small_png, adaptation="fast", time_budget_s=3, roi=roi, progress=False)
        assert result.metrics.roi == kind
        assert result.metrics.bytes == len(result.bitstream)
        assert decode_image(result.bitstream).rgb.shape == (H, W, 3)  # an ordinary bitstream


@pytest.mark.parametrize(
    ("fields", "mask"),
    [
        ({"roi": "auto"}, None),  # no adaptation preset
        ({"roi": "everything", "adaptation": "fast"}, None),
        ({"roi": "auto", "roi_rects": '[{"x": 1, "y": 1, "w": 5, "h": 5}]', "adaptation": "fast"}, None),
        ({"roi_rects": '[{"x": 1, "y": 1, "w": 5, "h": 5, "weight": NaN}]', "adaptation": "fast"}, None),
        ({"roi_rects": '[{"x": 1, "y": 1, "w": 5, "h": 5, "weight": -2}]', "adaptation": "fast"}, None),
        ({"roi_rects": '[{"x": 900, "y": 1, "w": 5, "h": 5}]', "adaptation": "fast"}, None),
        ({"roi_rects": "not json", "adaptation": "fast"}, None),
        ({"adaptation": "fast"}, png(np.zeros((H, W + 1), np.uint8) + 200)),  # wrong size
        ({"adaptation": "fast"}, png(np.zeros((H, W, 3), np.uint8) + 200, "JPEG")),  # wrong type
        ({"adaptation": "fast"}, png(np.zeros((H, W), np.uint8))),  # all weight zero
        ({"adaptation": "fast"}, b"\x89PNG\r\n\x1a\ntruncated"),
    ],
)
def test_bad_regions_are_422_problems(
    e2e: E2EStack, small_png: bytes, fields: dict[str, str], mask: bytes | None
) -> None:
    files: dict[str, tuple[str, bytes, str]] = {"file": ("a.png", small_png, "image/png")}
    if mask is not None:
        files["roi_mask"] = ("mask.png", mask, "image/png")
    with httpx.Client(base_url=e2e.url, headers={"Authorization": f"Bearer {KEYS['alice']}"}, timeout=60) as raw:
        r = raw.post("/v1/jobs", files=files, data=fields)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:udic:problem:invalid-roi"
    assert "Traceback" not in r.text
