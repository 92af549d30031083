"""Adaptive encode on CompressAI's hyperprior family (issue 15): ``bmshj2018-hyperprior`` (a
zero-mean Gaussian with hyper-predicted scales) and ``mbt2018-mean`` (mean-scale).

The weights are random (``tests/zoo_weights.py``) but loaded by the real zoo path, so what is
checked is the code path: refinement lowers the *real* RD cost (bytes and decoded pixels) of the
file against that model's plain encode, an adapted file decodes to the same pixels in a fresh
process, and the default model's bytes are untouched (``tests/test_bitstream_pins.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from codec.adaptation.encoder import AdaptiveEncoder, adaptive_encode, resolve_config
from codec.bitstream import Container, Section
from codec.coder import decode_image, load_input, read_header
from codec.progress import no_progress
from codec.zoo import Registry
from codec.zoo.errors import InvalidQualityError
from tests.zoo_weights import write_random_zoo_weights

ARCHS = ("bmshj2018-hyperprior", "mbt2018-mean")
QUALITY = 5  # lambda 0.025: distortion matters, and the networks are the small (N=128) ones
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("torch_home")
    for arch in ARCHS:
        write_random_zoo_weights(home, arch, QUALITY)
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)  # torch.hub reads it at every load
    yield home
    if old is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = old


@pytest.fixture(scope="module")
def crop(kodak_path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(kodak_path) as im:
        return np.asarray(im.convert("RGB"))[220:284, 330:394].copy()  # 64x64: one padded block


def _cfg() -> dict[str, object]:
    """Short stages with steps large enough to cross rounding bins in them; fp32 (no bf16)."""
    return {"latent_iters": 30, "latent_lr": 0.05, "decoder_iters": 15, "decoder_lr": 0.02, "amp": False}


@pytest.mark.parametrize("arch", ARCHS)
def test_refinement_lowers_the_real_rd_cost(torch_home: Path, crop: np.ndarray, arch: str) -> None:
    from PIL import Image

    reg = Registry()
    res = adaptive_encode(
        Image.fromarray(crop), arch, quality=QUALITY, config="fast", registry=reg, device=torch.device("cpu"), **_cfg()
    )
    assert res.costs["latents"] < 0.95 * res.costs["plain"], res.costs  # real files, not estimates
    assert res.choice != "plain" and res.rd_saving_pct > 5
    assert read_header(res.result.data)["model"] == arch
    assert decode_image(res.result.data, registry=reg, bit_exact=True).rgb.tobytes() == res.result.decoded.rgb.tobytes()


@pytest.mark.parametrize("arch", ARCHS)
def test_adapted_file_decodes_bit_exactly_in_a_fresh_process(
    torch_home: Path, crop: np.ndarray, arch: str, tmp_path: Path
) -> None:
    from PIL import Image

    reg = Registry()
    base, level = reg.resolve(arch, QUALITY)
    cfg = resolve_config("fast", **_cfg())
    enc = AdaptiveEncoder(base, load_input(Image.fromarray(crop)), level, cfg, torch.device("cpu"), no_progress, reg)
    with torch.no_grad():
        y0, z0 = enc.model.analysis(enc.x)
    adapted = enc.adapters_file(*enc.refine_latents(y0, z0))
    assert adapted is not None, "the adapters came out all zero"
    assert Section.ADAPTERS in Container.from_bytes(adapted.data).sections
    src, out = tmp_path / "a.udic", tmp_path / "a.npy"
    src.write_bytes(adapted.data)
    script = (
        "import sys, numpy as np; from codec.coder import decode_image; from codec.zoo import Registry; "
        "np.save(sys.argv[2], decode_image(open(sys.argv[1], 'rb').read(), registry=Registry(), bit_exact=True).rgb)"
    )
    env = {**os.environ, "TORCH_HOME": str(torch_home)}
    subprocess.run([sys.executable, "-c", script, str(src), str(out)], check=True, cwd=REPO, env=env, timeout=300)
    assert np.array_equal(np.load(out), adapted.decoded.rgb)


def test_factorised_models_and_checkpoints_without_a_lambda_are_refused(tmp_path: Path, crop: np.ndarray) -> None:
    """bmshj2018-factorized (no hyperprior) has no adaptable form (the context models have one:
    tests/test_zoo_context_adaptation.py); a bare-state-dict checkpoint carries no lambda to
    optimise for: both are one clear error, not a wrong optimisation."""
    from compressai.zoo import bmshj2018_factorized, mbt2018_mean
    from PIL import Image

    reg, img = Registry(), Image.fromarray(crop)
    torch.save(bmshj2018_factorized(quality=1, pretrained=False).state_dict(), tmp_path / "fac.pth")
    torch.save(mbt2018_mean(quality=1, pretrained=False).state_dict(), tmp_path / "msh.pth")
    reg.register_checkpoint("fac", tmp_path / "fac.pth", "bmshj2018-factorized", 0.01)
    reg.register_checkpoint("msh", tmp_path / "msh.pth", "mbt2018-mean")
    with pytest.raises(InvalidQualityError, match="cheng2020 architectures, not FactorizedPrior"):
        adaptive_encode(img, "fac", config="fast", registry=reg, latent_iters=1, decoder_iters=1)
    with pytest.raises(InvalidQualityError, match="no training lambda"):
        adaptive_encode(img, "msh", config="fast", registry=reg, latent_iters=1, decoder_iters=1)
