"""The web page in a real browser: Debian's chromium driven by playwright-core (tests/browser/flow.mjs).

The stack is the real one of tests/e2e/conftest.py (Redis, the API under uvicorn, a worker, API keys
on). The script uploads a photo crop, watches the progress, uses the split view, downloads the .udic
and the PNG, runs the same-size comparison, decodes the .udic it downloaded, cancels an encode, and
checks a wrong key and a bad upload are refused in words. Here, in Python: the downloaded .udic
decodes to exactly the pixels the page showed, and the comparison the page showed equals
``codec.evaluation.same_size`` (which tests/test_same_size.py holds equal to ``udic eval``).

Screenshots go to a temporary folder; ``UDIC_SCREENSHOTS=docs/screenshots`` keeps them there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from codec.coder import decode_image
from codec.evaluation.same_size import SAME_SIZE_CODECS, code_at_size
from tests.e2e.conftest import KEYS, E2EStack

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = ROOT / "tests" / "browser"
CHROMIUM = Path("/usr/bin/chromium")


def _runner() -> list[str]:
    """The node command, or a skip that says what is missing and how to get it."""
    node = shutil.which("node")
    if node is None or not CHROMIUM.exists():
        pytest.skip("needs node and Debian's chromium at /usr/bin/chromium (bash scripts/ensure_browser.sh)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        npm = shutil.which("npm")
        done = npm and subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR, capture_output=True)
        if not done or done.returncode != 0:
            pytest.skip("playwright-core is not installed: run (cd tests/browser && npm ci)")
    return [node, str(BROWSER_DIR / "flow.mjs")]


@pytest.fixture(scope="module")
def photo(datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 192x144 crop of Kodak 23 (parrots): small, so the adaptive encode takes minutes at most."""
    with Image.open(datasets / "kodak" / "kodim23.png") as im:
        arr = np.asarray(im.convert("RGB"))[130:274, 230:422]
    path = tmp_path_factory.mktemp("browser-in") / "parrots.png"
    Image.fromarray(arr).save(path)
    return path


def _psnr_text(v: float) -> str:
    return f"{v:.2f} dB"


def test_page_whole_flow_in_chromium(e2e: E2EStack, photo: Path, tmp_path: Path) -> None:
    cmd = _runner()
    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"this is not a picture, whatever its name says")
    refusal = httpx.post(
        e2e.url + "/v1/jobs", files={"file": (bad.name, bad.read_bytes())}, headers={"X-API-Key": KEYS["alice"]}
    )
    assert refusal.status_code == 422
    out = tmp_path / "out"
    shots = Path(os.environ.get("UDIC_SCREENSHOTS") or tmp_path / "shots")
    env = {
        **os.environ,
        "UDIC_URL": e2e.url,
        "UDIC_KEY": KEYS["alice"],
        "IMAGE": str(photo),
        "BAD_IMAGE": str(bad),
        "BAD_DETAIL": refusal.json()["detail"],
        "OUT": str(out),
        "SHOTS": str(shots),
    }
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    result = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else {}
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n{result.get('failure', '')}"

    # the .udic the page downloaded decodes to the pixels the page showed (and to its PNG download)
    decoded = decode_image((out / "result.udic").read_bytes()).rgb
    with Image.open(out / "shown.png") as im:
        shown = np.asarray(im.convert("RGB"))
    with Image.open(out / "result.png") as im:
        png = np.asarray(im.convert("RGB"))
    assert shown.shape == decoded.shape == (144, 192, 3)
    assert np.array_equal(shown, decoded)
    assert np.array_equal(png, decoded)
    assert result["download_name"] == "parrots.udic"

    # the comparison the page showed is the same-size search of udic eval's codecs
    rows = {r[0]: r for r in result["compare_rows"]}
    target = int(rows["udic"][2].replace(",", ""))
    assert target == len((out / "result.udic").read_bytes())
    with Image.open(photo) as im:
        rgb = np.asarray(im.convert("RGB"))
    for name in SAME_SIZE_CODECS:
        r = code_at_size(name, rgb, target)
        row = rows[r.label]
        assert row[1:5] == [str(r.setting), f"{r.bytes:,}", f"{r.bpp:.3f}", _psnr_text(r.psnr)], row
        assert r.bytes <= target

    assert "iteration" in result["progress_text"]
    assert "Not a usable image" in result["bad_upload_message"]
    assert "192 × 144 px" in result["decoded_info"]
