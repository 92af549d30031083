"""Issue 16 end to end on the shared stack: the SDK's README example without Pillow, domain adapters
that live until deleted (and are not deleted while bitstreams need them), uploads gone when a job
ends, a job whose retries are used up by lost workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import KEYS, E2EStack

pytestmark = pytest.mark.e2e
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_sdk_readme_example_works_without_pillow(e2e: E2EStack, small_png: bytes, tmp_path: Path) -> None:
    """``pip install ./client`` brings httpx and pydantic, not Pillow: decode() must work with those."""
    src = tmp_path / "photo.png"
    src.write_bytes(small_png)
    code = f"""
import sys
sys.modules["PIL"] = None  # no Pillow, as after `pip install ./client`
from udic_client import Client
c = Client({e2e.url!r}, api_key={KEYS["alice"]!r}, poll_interval=0.05)
result = c.compress({str(src)!r}, quality=3, progress=False)
print(result.metrics.bpp, result.metrics.psnr)
image = c.decode(result.bitstream)
assert image[:8] == {PNG_MAGIC!r}, type(image)
assert c.download_image(result.job.id)[:8] == {PNG_MAGIC!r}
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
