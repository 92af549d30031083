"""Shared fixtures: real images (from ../shared/datasets when present, else made here) and a real Redis."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", category=FutureWarning)

from codec.datasets import datasets_root  # noqa: E402


@pytest.fixture(scope="session")
def datasets() -> Path:
    root = datasets_root()
    if root is None:
        pytest.skip("../shared/datasets is not on this machine")
    return root


@pytest.fixture(scope="session")
def kodak_path(datasets: Path) -> Path:
    return datasets / "kodak" / "kodim23.png"


@pytest.fixture(scope="session")
def kodak_crop(datasets: Path) -> np.ndarray:
    """A 128x96 (odd-sized) natural crop, for fast tests."""
    from PIL import Image

    with Image.open(datasets / "kodak" / "kodim23.png") as im:
        rgb = np.asarray(im.convert("RGB"))
    return rgb[200:296, 300:428].copy()


def synthetic_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth-plus-edges test picture (not noise: noise is not what images look like)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            128 + 100 * np.sin(xx / 9.0 + seed),
            128 + 100 * np.cos(yy / 13.0),
            (xx + yy) * 255.0 / max(1, h + w),
        ],
        axis=-1,
    )
    img[h // 3 : h // 2, w // 4 : w // 2] = [250, 20, 20]
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server of its own for a test module (skipped where none can be installed)."""
    from service import stack as st

    try:
        st.redis_server_binary()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    port, data = st.free_port(), tmp_path_factory.mktemp("redis")
    proc = st.start_redis(port, data, data / "redis.log")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        st.stop(proc)
