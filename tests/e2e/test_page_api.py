"""The page's server side over real HTTP: the page under a strict CSP, its config, and POST /v1/compare."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from codec.evaluation.same_size import code_at_size
from tests.e2e.conftest import KEYS, E2EStack

pytestmark = pytest.mark.e2e


def _auth(who: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


def test_page_is_served_with_a_strict_csp(e2e: E2EStack) -> None:
    r = httpx.get(e2e.url + "/")  # the page itself needs no key: it asks for one
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in r.text and "style=" not in r.text and "http" not in r.text.split("<footer>")[0]
    js = httpx.get(e2e.url + "/static/app.js")
    assert js.headers["content-type"].startswith("text/javascript") and "content-security-policy" in js.headers
    for bad in ("/static/..%2Fapi%2Fmain.py", "/static/nothing.js", "/static/app.py"):
        r = httpx.get(e2e.url + bad)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", bad
    cfg = httpx.get(e2e.url + "/ui/config.json").json()
    assert cfg["auth"] is True and cfg["presets"][0] == "none" and "fast" in cfg["presets"]
    assert [c["label"] for c in cfg["compare_codecs"]] == ["JPEG", "WebP", "AVIF"]
    assert "/" not in httpx.get(e2e.url + "/openapi.json").json()["paths"]


def test_compare_matches_the_same_size_search(e2e: E2EStack, small_png: bytes) -> None:
    rgb = np.asarray(Image.open(io.BytesIO(small_png)).convert("RGB"))
    for codec in ("jpeg420", "webp", "avif444"):
        r = httpx.post(
            e2e.url + "/v1/compare",
            files={"file": ("x.png", small_png)},
            data={"target_bytes": "6000", "codec": codec},
            headers=_auth(),
            timeout=120,
        )
        assert r.status_code == 200, r.text
        got = r.json()
        want = code_at_size(codec, rgb, 6000)
        assert (got["setting"], got["bytes"], got["psnr"]) == (want.setting, want.bytes, want.psnr)
        assert got["bytes"] <= 6000 and got["fits"] and (got["width"], got["height"]) == (256, 192)
        png = base64.b64decode(got["image"].split(",", 1)[1])
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), want.decoded)


def test_compare_refuses_in_words(e2e: E2EStack, small_png: bytes) -> None:
    url = e2e.url + "/v1/compare"
    r = httpx.post(url, files={"file": ("x.png", small_png)}, data={"target_bytes": "6000", "codec": "webp"})
    assert r.status_code == 401
    cases = [
        ({"file": ("x.png", b"not an image")}, {"target_bytes": "6000", "codec": "webp"}, "invalid-image"),
        ({"file": ("x.png", small_png)}, {"target_bytes": "0", "codec": "webp"}, "validation-error"),
        ({"file": ("x.png", small_png)}, {"target_bytes": "6000", "codec": "gif"}, "validation-error"),
    ]
    for files, data, kind in cases:
        r = httpx.post(url, files=files, data=data, headers=_auth(), timeout=60)
        assert r.status_code == 422 and r.json()["type"].endswith(kind), r.text
        assert r.headers["content-type"] == "application/problem+json"
    tiny = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(tiny, format="PNG")
    r = httpx.post(
        url,
        files={"file": ("t.png", tiny.getvalue())},
        data={"target_bytes": "10", "codec": "jpeg420"},
        headers=_auth(),
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["fits"] is False and r.json()["bytes"] > 10
