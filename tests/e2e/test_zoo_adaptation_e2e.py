"""``model=bmshj2018-hyperprior&adaptation=fast`` through the service (issue 15): real Redis, the API
under uvicorn and a worker, as separate processes that get the zoo weights the way an offline
install does (files in ``$TORCH_HOME/hub/checkpoints``; random weights, ``tests/zoo_weights.py``).

The shared e2e stack has no such weights, so this module starts its own, with ``TORCH_HOME`` set.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from udic_client import Client, CompressResult, ValidationError

from codec.coder import decode_image
from codec.zoo import Registry
from tests.model_stack import model_stack
from tests.zoo_weights import write_random_zoo_weights

pytestmark = pytest.mark.e2e

ARCH, QUALITY = "bmshj2018-hyperprior", 5


@pytest.fixture(scope="module")
def zoo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("zoo_stack")
    home = data / "torch_home"
    write_random_zoo_weights(home, ARCH, QUALITY)
    write_random_zoo_weights(home, "bmshj2018-factorized", 1)  # no hyperprior: loads, but has no adaptive encode
    with model_stack(data, {"TORCH_HOME": str(home)}) as url:
        yield url, home


def _png(kodak_path: Path) -> bytes:
    with Image.open(kodak_path) as im:
        crop = im.convert("RGB").crop((330, 220, 394, 284))  # 64x64
    buf = io.BytesIO()
    crop.save(buf, format="PNG")
    return buf.getvalue()


def test_zoo_model_adaptive_job_is_accepted_and_decodes(zoo_stack: tuple[str, Path], kodak_path: Path) -> None:
    url, home = zoo_stack
    c = Client(url, poll_interval=0.1)
    png = _png(kodak_path)
    result = c.compress(png, model=ARCH, quality=QUALITY, adaptation="fast", time_budget_s=20, progress=False)
    assert isinstance(result, CompressResult)
    m = result.metrics
    assert result.job.state == "finished" and m.adaptation == "fast"
    assert m.adaptation_choice in ("plain", "latents", "latents+adapters") and m.rd_saving_pct >= 0.0
    served = np.asarray(c.decode(result.bitstream, format="pil").convert("RGB"))  # the API's decode
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    try:
        local = decode_image(result.bitstream, registry=Registry(), bit_exact=True).rgb
    finally:
        os.environ.pop("TORCH_HOME") if old is None else os.environ.__setitem__("TORCH_HOME", old)
    # the API's decode is the default one (sub-pixel last layer, all cores): within a level of the canonical
    assert np.abs(served.astype(int) - local.astype(int)).max() <= 1
    # a model without an adaptive form is refused up front (422), not queued to fail in the worker
    with pytest.raises(ValidationError, match="cheng2020 architectures"):
        c.submit(png, model="bmshj2018-factorized", quality=1, adaptation="fast")
