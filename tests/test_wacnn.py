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

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.bitstream import BitstreamError, Container, Field, Section
from codec.coder import decode_image, encode_report, read_header
from codec.models.wacnn import WACNN, load_published
from codec.models.window_attention import relative_position_index
from codec.zoo import ModelError, Registry

REPO = Path(__file__).resolve().parents[1]
LAMBDA = 0.025
_OLD_EB = {"matrices": "_matrix", "biases": "_bias", "factors": "_factor"}


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


def as_published(sd: dict[str, torch.Tensor]) -> dict[str, object]:
    """Our state dict as the authors' training saves it (DataParallel, older CompressAI names)."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "entropy_bottleneck" and parts[1] in _OLD_EB:
            k = f"entropy_bottleneck.{_OLD_EB[parts[1]]}{parts[2]}"
        out[f"module.{k}"] = v
    return {"epoch": 3, "state_dict": out, "loss": 1.0, "optimizer": {"state": {}}}


def write_random_wacnn(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = WACNN()
    net.update(force=True)
    with torch.no_grad():
        net.g_a[7].weight.mul_(30.0)  # the last convolution before the final attention module
        net.g_s[-1].bias.fill_(0.45)
    torch.save(as_published(net.state_dict()), path)
    return path


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


def _fresh_decode(data: bytes, ckpt: Path, tmp_path: Path) -> np.ndarray:
    src, out = tmp_path / "f.udic", tmp_path / "f.npy"
    src.write_bytes(data)
    script = (
        "import sys, numpy as np; from pathlib import Path; from codec.coder import decode_image; "
        "from codec.zoo import Registry; r = Registry(); "
        "r.register_checkpoint('wacnn-mine', Path(sys.argv[3]), 'wacnn'); "
        "np.save(sys.argv[2], decode_image(open(sys.argv[1], 'rb').read(), registry=r).rgb)"
    )
    subprocess.run([sys.executable, "-c", script, str(src), str(out), str(ckpt)], check=True, cwd=REPO, timeout=300)
    return np.load(out)


def test_plain_round_trip_is_bit_exact_in_a_fresh_process(
    registry: Registry, ckpt: Path, kodak_crop: np.ndarray, tmp_path: Path
) -> None:
    img = Image.fromarray(kodak_crop)  # 128x96: padded to 128x128, windows need the padding
    res = encode_report(img, "wacnn-mine", registry=registry)
    c = Container.from_bytes(res.data)
    assert Field.SYMBOLS_HASH in c.fields and read_header(res.data)["model"] == "wacnn-mine"
    assert len(c.section(Section.Y)) > 100, "random latents should span several bins"
    assert np.array_equal(_fresh_decode(res.data, ckpt, tmp_path), res.decoded.rgb)
    # a changed y payload fails the symbol hash before any synthesis
    c.sections[Section.Y] = bytes(b ^ 0x5A for b in c.sections[Section.Y])
    with pytest.raises(BitstreamError, match=r"does not decode to what was encoded|corrupt"):
        decode_image(c.to_bytes(), registry=registry)
