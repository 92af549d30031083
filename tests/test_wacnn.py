"""WACNN (issue 15, seeds 001/002's base model): the architecture loads the authors' published
checkpoint format strictly, codes and decodes bit-exactly through our container and decode path,
adapts (refinement lowers the real RD cost, adapted files decode bit-exactly in a fresh process),
and registers through ``udic models add`` with its weights hash.

The weights are random (no published file is reachable offline), written in the published format:
a ``state_dict`` entry next to training state, ``module.`` prefixes, CompressAI's older names for
the entropy bottleneck. As for the zoo tests, the analysis's last convolution is scaled so that the
latents span a few quantisation bins, and the synthesis outputs mid-grey.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from codec.adaptation.adapters import unpack_adapters
from codec.adaptation.backends import is_adaptable
from codec.adaptation.encoder import AdaptiveEncoder, _real_cost, resolve_config
from codec.adaptation.rate import hard_latents
from codec.bitstream import BitstreamError, Container, Field, Section
from codec.coder import decode_image, encode_report, encode_resolved, load_input, read_header
from codec.determinism import canonical_compute
from codec.models.wacnn import WACNN, load_published
from codec.models.window_attention import relative_position_index
from codec.progress import no_progress
from codec.zoo import ModelError, ModelMismatchError, Registry, parse_checkpoint
from codec.zoo.user_models import read_models, register_user_models
from tests.model_stack import model_stack
from tests.wacnn_weights import write_random_wacnn

REPO = Path(__file__).resolve().parents[1]
LAMBDA = 0.025


def published_keys() -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer of the authors' released WACNN (N=192, M=320), with its shape,
    written out from their module layout: what a published checkpoint holds, not what our class
    happens to have."""
    keys: dict[str, tuple[int, ...]] = {}

    def conv(p: str, cin: int, cout: int, k: int) -> None:
        keys[f"{p}.weight"], keys[f"{p}.bias"] = (cout, cin, k, k), (cout,)

    def deconv(p: str, cin: int, cout: int) -> None:
        keys[f"{p}.weight"], keys[f"{p}.bias"] = (cin, cout, 5, 5), (cout,)

    def gdn(p: str, c: int) -> None:
        keys[f"{p}.beta"], keys[f"{p}.gamma"] = (c,), (c, c)
        for r in ("beta_reparam", "gamma_reparam"):
            keys[f"{p}.{r}.pedestal"] = keys[f"{p}.{r}.lower_bound.bound"] = (1,)

    def unit(p: str, c: int) -> None:
        conv(f"{p}.conv.0", c, c // 2, 1)
        conv(f"{p}.conv.2", c // 2, c // 2, 3)
        conv(f"{p}.conv.4", c // 2, c, 1)

    def wam(p: str, c: int, w: int) -> None:
        for i in range(3):
            unit(f"{p}.conv_a.{i}", c)
        a = f"{p}.conv_b.0.attn"
        keys[f"{a}.relative_position_bias_table"] = ((2 * w - 1) ** 2, 8)
        keys[f"{a}.relative_position_index"] = (w * w, w * w)
        keys[f"{a}.qkv.weight"], keys[f"{a}.qkv.bias"] = (3 * c, c), (3 * c,)
        keys[f"{a}.proj.weight"], keys[f"{a}.proj.bias"] = (c, c), (c,)
        for i in (1, 2, 3):
            unit(f"{p}.conv_b.{i}", c)
        conv(f"{p}.conv_b.4", c, c, 1)

    for i, (cin, cout) in zip((0, 2, 5, 7), ((3, 192), (192, 192), (192, 192), (192, 320)), strict=True):
        conv(f"g_a.{i}", cin, cout, 5)
    for i in (1, 3, 6):
        gdn(f"g_a.{i}", 192)
    wam("g_a.4", 192, 8)
    wam("g_a.8", 320, 4)
    wam("g_s.0", 320, 4)
    for i, (cin, cout) in zip((1, 3, 6, 8), ((320, 192), (192, 192), (192, 192), (192, 3)), strict=True):
        deconv(f"g_s.{i}", cin, cout)
    for i in (2, 4, 7):
        gdn(f"g_s.{i}", 192)
    wam("g_s.5", 192, 8)
    for i, (cin, cout) in enumerate(((320, 320), (320, 288), (288, 256), (256, 224), (224, 192))):
        conv(f"h_a.{2 * i}", cin, cout, 3)
    for h in ("h_mean_s", "h_scale_s"):
        conv(f"{h}.0", 192, 192, 3)
        conv(f"{h}.2.0", 192, 224 * 4, 3)
        conv(f"{h}.4", 224, 256, 3)
        conv(f"{h}.6.0", 256, 288 * 4, 3)
        conv(f"{h}.8", 288, 320, 3)
    for name, first in (("cc_mean_transforms", 0), ("cc_scale_transforms", 0), ("lrp_transforms", 1)):
        for s in range(10):
            widths = (320 + 32 * min(s + first, 5 + first), 224, 176, 128, 64, 32)
            for j in range(5):
                conv(f"{name}.{s}.{2 * j}", widths[j], widths[j + 1], 3)
    eb = "entropy_bottleneck"
    filters = (1, 3, 3, 3, 3, 1)
    for i in range(5):
        keys[f"{eb}._matrix{i}"] = (192, filters[i + 1], filters[i])
        keys[f"{eb}._bias{i}"] = (192, filters[i + 1], 1)
        if i < 4:
            keys[f"{eb}._factor{i}"] = (192, filters[i + 1], 1)
    keys[f"{eb}.quantiles"], keys[f"{eb}.target"], keys[f"{eb}.likelihood_lower_bound.bound"] = (192, 1, 3), (3,), (1,)
    keys[f"{eb}._offset"], keys[f"{eb}._quantized_cdf"], keys[f"{eb}._cdf_length"] = (192,), (192, 40), (192,)
    gc = "gaussian_conditional"
    keys[f"{gc}._offset"], keys[f"{gc}._quantized_cdf"], keys[f"{gc}._cdf_length"] = (64,), (64, 3000), (64,)
    keys[f"{gc}.scale_table"], keys[f"{gc}.scale_bound"] = (64,), (1,)
    keys[f"{gc}.likelihood_lower_bound.bound"] = keys[f"{gc}.lower_bound_scale.bound"] = (1,)
    return keys


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_wacnn(tmp_path_factory.mktemp("wacnn") / "wacnn_q3.pth.tar")


@pytest.fixture(scope="module")
def registry(ckpt: Path) -> Iterator[Registry]:
    reg = Registry(capacity=2)
    reg.register_checkpoint("wacnn-mine", ckpt, "wacnn", LAMBDA)
    yield reg


@pytest.fixture(scope="module")
def crop(kodak_path: Path) -> Image.Image:
    with Image.open(kodak_path) as im:
        return im.convert("RGB").crop((330, 220, 394, 284))  # 64x64: one padded block


def test_published_key_set_loads_strictly() -> None:
    expected = published_keys()
    ours = {k: tuple(v.shape) for k, v in WACNN().state_dict().items()}
    renamed = {k for k in expected if k.startswith("entropy_bottleneck._")}
    assert len(ours) == len(expected) and set(ours) - set(expected) == {
        k.replace("._matrix", ".matrices.").replace("._bias", ".biases.").replace("._factor", ".factors.")
        for k in renamed
        if any(s in k for s in ("_matrix", "_bias", "_factor"))
    }
    sd: dict[str, torch.Tensor] = {}
    for k, shape in expected.items():
        integer = k.endswith(("_offset", "_quantized_cdf", "_cdf_length", "relative_position_index"))
        sd[f"module.{k}"] = (
            torch.zeros(shape, dtype=torch.int64 if "index" in k else torch.int32) if integer else torch.rand(shape)
        )
    net = load_published({"epoch": 1, "state_dict": sd})  # strict: any missing or extra key raises
    assert torch.equal(net.cc_mean_transforms[7][0].weight, sd["module.cc_mean_transforms.7.0.weight"])
    assert torch.equal(net.entropy_bottleneck.matrices[4], sd["module.entropy_bottleneck._matrix4"])
    del sd["module.lrp_transforms.9.8.bias"]
    with pytest.raises(RuntimeError, match=r"lrp_transforms\.9\.8\.bias"):
        load_published({"state_dict": sd})


def test_window_index_and_one_line_refusal(tmp_path: Path) -> None:
    assert relative_position_index(2).tolist() == [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    from compressai.zoo import mbt2018_mean

    torch.save({"state_dict": mbt2018_mean(quality=1, pretrained=False).state_dict()}, tmp_path / "other.pth")
    reg = Registry()
    reg.register_checkpoint("not-wacnn", tmp_path / "other.pth", "wacnn")
    with pytest.raises(ModelError, match=r"does not fit architecture wacnn \(.*and \d+ more\)") as err:
        reg.get("not-wacnn")
    assert "\n" not in str(err.value)


def _cfg() -> dict[str, object]:
    """Short stages with steps large enough to cross rounding bins in them; fp32 (no bf16)."""
    return {"latent_iters": 12, "latent_lr": 0.05, "decoder_iters": 8, "decoder_lr": 0.02, "amp": False}


@pytest.fixture(scope="module")
def coded(registry: Registry, crop: Image.Image) -> dict[str, Any]:
    """One refinement on the 64x64 crop: the plain file, the refined-latents file, the adapted file."""
    base, level = registry.resolve("wacnn-mine")
    img = load_input(crop)
    cfg = resolve_config("fast", **_cfg())
    enc = AdaptiveEncoder(base, img, level, cfg, torch.device("cpu"), no_progress, registry)
    with torch.no_grad():
        y0, z0 = enc.model.analysis(enc.x)
    yg, z = enc.refine_latents(y0, z0)
    with canonical_compute():  # as the final coding computes them
        hard = hard_latents(enc.model, yg, z)
        _, (y_sym, _) = enc.model.compress(yg, z)
    symbols = (hard.y_hat - hard.params.means).round().to(torch.int32), y_sym
    adapted = enc.adapters_file(yg, z)
    assert adapted is not None, "the adapters came out all zero"
    plain = encode_resolved(base, img, level, registry)
    files = {"plain": plain, "latents": enc._code(yg, z, None), "adapters": adapted}
    return {"files": files, "img": img, "lmbda": enc.lmbda, "symbols": symbols, "net": base.net}


def test_refinement_lowers_the_real_rd_cost(coded: dict[str, Any]) -> None:
    files, img = coded["files"], coded["img"]
    assert is_adaptable(coded["net"]) and coded["lmbda"] == LAMBDA
    cost = {k: _real_cost(r, img, LAMBDA) for k, r in files.items()}
    assert cost["latents"] < 0.95 * cost["plain"], cost  # real files (bytes, decoded pixels)
    assert cost["adapters"] < cost["plain"], cost
    # the refinement's hard estimates round exactly as the file codes: the same integer symbols
    hard_symbols, coded_symbols = coded["symbols"]
    assert torch.equal(hard_symbols, coded_symbols)


def test_plain_and_adapted_files_decode_bit_exactly_in_a_fresh_process(
    coded: dict[str, Any], registry: Registry, ckpt: Path, tmp_path: Path
) -> None:
    plain, adapted = coded["files"]["plain"], coded["files"]["adapters"]
    c = Container.from_bytes(adapted.data)
    specs, _, _ = unpack_adapters(c.sections[Section.ADAPTERS])
    assert [(s.position, s.channels, s.rank) for s in specs] == [(5, 192, 2)]  # seed 001: 768 parameters
    for res in (plain, adapted):
        assert Field.SYMBOLS_HASH in Container.from_bytes(res.data).fields
    srcs = []
    for i, res in enumerate((plain, adapted)):
        srcs.append(tmp_path / f"{i}.udic")
        srcs[-1].write_bytes(res.data)
    script = (
        "import sys, numpy as np; from pathlib import Path; from codec.coder import decode_image; "
        "from codec.zoo import Registry; r = Registry(); "
        "r.register_checkpoint('wacnn-mine', Path(sys.argv[1]), 'wacnn'); "
        "[np.save(f + '.npy', decode_image(open(f, 'rb').read(), registry=r, bit_exact=True).rgb) "
        "for f in sys.argv[2:]]"
    )
    subprocess.run([sys.executable, "-c", script, str(ckpt), *map(str, srcs)], check=True, cwd=REPO, timeout=600)
    for src, res in zip(srcs, (plain, adapted), strict=True):
        assert np.array_equal(np.load(f"{src}.npy"), res.decoded.rgb)
    # a changed y payload fails the symbol hash before any synthesis
    c.sections[Section.Y] = bytes(b ^ 0x5A for b in c.sections[Section.Y])
    with pytest.raises(BitstreamError, match=r"does not decode to what was encoded|corrupt"):
        decode_image(c.to_bytes(), registry=registry)


def test_udic_models_add_keeps_the_hash_and_other_weights_refuse(ckpt: Path, crop: Image.Image, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "codec.cli", "models", "add", "wm", str(ckpt), "--arch", "wacnn", "--lambda", "0.025"]
    added = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert added.returncode == 0, added.stderr
    assert f"UDIC_CHECKPOINTS=wm={ckpt}@wacnn@0.025" in added.stdout
    (kept,) = read_models(tmp_path / "var/storage/models.json")
    reg = Registry(capacity=1)
    assert register_user_models(reg, tmp_path / "var/storage/models.json") == []
    assert reg.get("wm").hash.hex() == kept.weights_hash and kept.weights_hash in added.stdout
    res = encode_report(crop, "wm", registry=reg)
    assert read_header(res.data)["model_hash"] == kept.weights_hash
    other = Registry(
        capacity=1, checkpoints=[parse_checkpoint(f"wm={write_random_wacnn(tmp_path / 'o.pth', 1)}@wacnn")]
    )
    with pytest.raises(ModelMismatchError, match="different weights for model 'wm'"):
        decode_image(res.data, registry=other)


# ------------------------------------------------------------------------------------------ e2e
@pytest.fixture(scope="module")
def wacnn_stack(tmp_path_factory: pytest.TempPathFactory, ckpt: Path) -> Iterator[str]:
    """Its own Redis, API and worker, given the WACNN checkpoint by ``UDIC_CHECKPOINTS``."""
    entry = f"wacnn-svc={ckpt}@wacnn@{LAMBDA}"
    with model_stack(tmp_path_factory.mktemp("wacnn_stack"), {"UDIC_CHECKPOINTS": entry}) as url:
        yield url


@pytest.mark.e2e
def test_service_accepts_an_adaptive_wacnn_job_and_decodes_it(wacnn_stack: str, ckpt: Path, crop: Image.Image) -> None:
    from udic_client import Client

    png = io.BytesIO()
    crop.save(png, format="PNG")
    c = Client(wacnn_stack, poll_interval=0.2)
    job = c.wait(c.submit(png.getvalue(), model="wacnn-svc", adaptation="fast", time_budget_s=15).id, timeout=600)
    assert job.state == "finished" and job.metrics is not None and job.metrics.adaptation == "fast"
    assert job.metrics.adaptation_choice in ("plain", "latents", "latents+adapters")  # the budget may end it early
    assert job.metrics.rd_saving_pct >= 0.0
    data = c.download(job.id)
    served = np.asarray(c.decode(data, format="pil").convert("RGB")).astype(int)  # the API's decode, on its threads
    reg = Registry()
    reg.register_checkpoint("wacnn-svc", ckpt, "wacnn")
    exact = decode_image(data, registry=reg, bit_exact=True).rgb.astype(int)
    assert np.abs(served - exact).max() <= 1 and np.mean(served != exact) < 0.01  # thread-count rounding only


def test_dr_posterior_samples_wacnn_hyper_analysis_with_dropout() -> None:
    """``dr`` (seed 002) estimates p(z|y) by MC dropout after h_a's activations; WACNN's are GELUs.
    Without dropout there the posterior variance is 0 and the regulariser explodes."""
    from codec.adaptation.stages import _dropout_hyper_encoder

    h_a = WACNN().h_a
    drop = _dropout_hyper_encoder(h_a, 0.5).train()
    assert sum(isinstance(m, torch.nn.Dropout) for m in drop) == 4
    with torch.no_grad():
        samples = drop(torch.randn(1, 320, 8, 8).expand(8, -1, -1, -1))
    assert float(samples.var(0).mean()) > 0
