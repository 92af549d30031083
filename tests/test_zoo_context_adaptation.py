"""Adaptive encode on CompressAI's autoregressive context models (issue 15): ``mbt2018`` and
``cheng2020-attn``, as user checkpoints (``NAME=PATH@ARCH@LAMBDA``) of randomly initialised
networks (no internet here), small (N=64: the checkpoint loader reads the size from the state dict)
so that the serial coding of a 64x64 crop takes a fraction of a second.

What is checked is the code path: the refinement (parallel training-mode rate) lowers the *real* RD
cost of the file (bytes and decoded pixels of the serially coded file) against the plain encode on
that model; the adapted file carries a symbol hash and decodes to the same pixels in a fresh
process; the final coding is byte for byte CompressAI's own; and, end to end, the service accepts an
adaptive job on such a checkpoint, says up front that the model codes serially, and decodes the result.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.adaptation.backends import adaptable
from codec.adaptation.encoder import AdaptiveResult, adaptive_encode
from codec.adaptation.rate import hard_latents
from codec.bitstream import Container, Field, Section
from codec.coder import decode_image, pad_image, read_header, to_tensor
from codec.determinism import canonical_compute
from codec.zoo import Registry
from tests.model_stack import model_stack

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from compressai.models import Cheng2020Attention, JointAutoregressiveHierarchicalPriors

ARCHS = ("mbt2018", "cheng2020-attn")
LMBDA = 0.025  # CompressAI's quality 5: distortion matters
REPO = Path(__file__).resolve().parents[1]


def write_random_checkpoint(arch: str, path: Path, n: int = 64, seed: int = 0) -> Path:
    """A random-init state dict of ``arch`` with N=M=``n``, scaled like ``tests/zoo_weights.py``
    does: latents that span a few quantisation bins, a synthesis that outputs about mid-grey."""
    torch.manual_seed(seed)
    with torch.no_grad():
        if arch == "mbt2018":
            net: torch.nn.Module = JointAutoregressiveHierarchicalPriors(N=n, M=n)
            net.g_a[-1].weight.mul_(30.0)
            net.g_s[-1].bias.fill_(0.45)
        else:  # g_a ends in an attention block, g_s in a sub-pixel convolution (conv, shuffle)
            net = Cheng2020Attention(N=n)
            net.g_a[-2].weight.mul_(4.0)
            net.g_a[-2].bias.mul_(4.0)
            net.g_s[-1][0].weight.mul_(0.2)
            net.g_s[-1][0].bias.fill_(0.45)
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("context_checkpoints")
    return {arch: write_random_checkpoint(arch, folder / f"{arch}.pth") for arch in ARCHS}


def _registry(checkpoints: dict[str, Path]) -> Registry:
    reg = Registry()
    for arch, path in checkpoints.items():
        reg.register_checkpoint(f"ctx-{arch}", path, arch, LMBDA)
    return reg


@pytest.fixture(scope="module")
def crop(kodak_path: Path) -> Image.Image:
    with Image.open(kodak_path) as im:
        return im.convert("RGB").crop((330, 220, 394, 284))  # 64x64: one padded block


def _cfg() -> dict[str, object]:
    """Short stages with steps large enough to cross rounding bins in them; fp32 (no bf16)."""
    return {"latent_iters": 24, "latent_lr": 0.05, "decoder_iters": 12, "decoder_lr": 0.02, "amp": False}


@pytest.fixture(scope="module")
def adapted(checkpoints: dict[str, Path], crop: Image.Image) -> dict[str, AdaptiveResult]:
    """One adaptive encode per architecture, shared by the tests below (each takes seconds)."""
    reg = _registry(checkpoints)
    cpu = torch.device("cpu")
    return {
        arch: adaptive_encode(crop, f"ctx-{arch}", config="fast", registry=reg, device=cpu, **_cfg()) for arch in ARCHS
    }


@pytest.mark.parametrize("arch", ARCHS)
def test_refinement_lowers_the_real_rd_cost(adapted: dict[str, AdaptiveResult], arch: str) -> None:
    res = adapted[arch]
    assert res.costs["latents"] < 0.98 * res.costs["plain"], res.costs  # real files, not estimates
    assert res.choice == "latents+adapters" and res.rd_saving_pct > 5, (res.choice, res.costs)
    assert read_header(res.result.data)["model"] == f"ctx-{arch}"


@pytest.mark.parametrize("arch", ARCHS)
def test_adapted_file_decodes_bit_exactly_in_a_fresh_process(
    adapted: dict[str, AdaptiveResult], checkpoints: dict[str, Path], arch: str, tmp_path: Path
) -> None:
    res = adapted[arch].result
    c = Container.from_bytes(res.data)
    assert Section.ADAPTERS in c.sections and Field.SYMBOLS_HASH in c.fields
    src, out = tmp_path / "a.udic", tmp_path / "a.npy"
    src.write_bytes(res.data)
    script = (
        "import sys, numpy as np; from pathlib import Path; from codec.coder import decode_image; "
        "from codec.zoo import Registry; reg = Registry(); "
        "reg.register_checkpoint(sys.argv[3], Path(sys.argv[4]), sys.argv[5]); "
        "np.save(sys.argv[2], decode_image(open(sys.argv[1], 'rb').read(), registry=reg).rgb)"
    )
    args = [str(src), str(out), f"ctx-{arch}", str(checkpoints[arch]), arch]  # no lambda: decoding needs none
    subprocess.run([sys.executable, "-c", script, *args], check=True, cwd=REPO, timeout=300)
    assert np.array_equal(np.load(out), res.decoded.rgb)


@pytest.mark.parametrize("arch", ARCHS)
def test_final_coding_is_compressais_own_and_the_hard_estimate_finds_its_symbols(
    checkpoints: dict[str, Path], crop: Image.Image, arch: str
) -> None:
    """The adaptive encode's coder gives CompressAI's ``compress`` bytes for the analysis latents
    (so the decoder needs nothing new), and the parallel fixed-point estimate of the serial rounding
    (what the refinement keeps its best iterate by) lands on the coder's symbols."""
    base = _registry(checkpoints).get(f"ctx-{arch}")
    model = adaptable(base.net, torch.zeros(1))
    x = pad_image(to_tensor(np.asarray(crop)))
    with canonical_compute():
        theirs = base.net.compress(x)["strings"]  # type: ignore[operator]
        y, z = model.analysis(x)
        strings, symbols = model.compress(y, z)
        hard = hard_latents(model, y, z)
    assert strings[0] == theirs[0] and strings[1] == theirs[1]
    estimate = torch.round(hard.y_hat - hard.params.means).to(torch.int32)
    assert float((estimate != symbols[0]).float().mean()) < 0.01


def test_plain_context_files_decode_as_before(checkpoints: dict[str, Path], crop: Image.Image) -> None:
    """A plain encode codes as CompressAI's ``compress`` (and now keeps the symbols for the hash);
    the decoder now runs a context model's synthesis itself (so adapters can fold in): a plain
    file still decodes to CompressAI's own ``decompress`` pixels."""
    from codec.coder import encode_report

    reg = _registry(checkpoints)
    for arch in ARCHS:
        res = encode_report(crop, model=f"ctx-{arch}", registry=reg)
        base = reg.get(f"ctx-{arch}")
        c = Container.from_bytes(res.data)
        assert Field.SYMBOLS_HASH in c.fields  # plain files carry the symbol hash too
        with canonical_compute():
            assert base.net.compress(pad_image(to_tensor(np.asarray(crop))))["strings"][0][0] == c.section(Section.Y)  # type: ignore[operator]
        w, h = c.image_size()
        with canonical_compute():
            x_hat = base.net.decompress([[c.section(Section.Y)], [c.section(Section.Z)]], (1, 1))["x_hat"]  # type: ignore[operator]
        theirs = x_hat.clamp(0, 1).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0)[:h, :w].numpy()
        assert np.array_equal(decode_image(res.data, registry=reg, bit_exact=True).rgb, theirs)


# ------------------------------------------------------------------------------------------ e2e
@pytest.fixture(scope="module")
def context_stack(tmp_path_factory: pytest.TempPathFactory, checkpoints: dict[str, Path]) -> Iterator[str]:
    """Its own Redis, API and worker, given a cheng2020-attn checkpoint by ``UDIC_CHECKPOINTS``."""
    entry = f"ctxattn={checkpoints['cheng2020-attn']}@cheng2020-attn@{LMBDA}"
    with model_stack(tmp_path_factory.mktemp("context_stack"), {"UDIC_CHECKPOINTS": entry}) as url:
        yield url


@pytest.mark.e2e
def test_service_adapts_a_context_checkpoint_and_says_it_is_slow(
    context_stack: str, checkpoints: dict[str, Path], crop: Image.Image
) -> None:
    from udic_client import Client

    png = io.BytesIO()
    crop.save(png, format="PNG")
    c = Client(context_stack, poll_interval=0.2)
    queued = c.submit(png.getvalue(), model="ctxattn", adaptation="fast", time_budget_s=20)
    assert queued.state == "queued" and "serially" in (queued.notice or "")  # said up front
    listing = {m["name"]: m for m in c.models()}
    assert "serially" in (listing["ctxattn"].get("notice") or "")
    job = c.wait(queued.id, timeout=300)
    assert job.state == "finished" and job.metrics is not None and job.metrics.adaptation == "fast"
    assert job.metrics.adaptation_choice in ("plain", "latents", "latents+adapters")
    data = c.download(job.id)
    served = np.asarray(c.decode(data, format="pil").convert("RGB"))  # the API's decode
    reg = Registry()
    reg.register_checkpoint("ctxattn", checkpoints["cheng2020-attn"], "cheng2020-attn")
    exact = decode_image(data, registry=reg, bit_exact=True).rgb  # the API's decode is the default one
    assert np.abs(served.astype(int) - exact.astype(int)).max() <= 1
    assert os.environ.get("UDIC_CHECKPOINTS") is None  # the stack's own, not this process's
