"""Content-adaptive encoding on small crops with few iterations: correctness, not quality."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.adaptation.adapters import decode_ints, encode_ints
from codec.adaptation.encoder import PRESETS, adaptive_encode
from codec.adaptation.sga import sga_round, sga_temperature
from codec.bitstream import BitstreamError, Container, Section
from codec.coder import decode_image, read_header
from codec.progress import ProgressEvent
from codec.zoo import Registry
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def line_crop(datasets: Path) -> Image.Image:
    from codec.datasets import most_detailed_window

    with Image.open(datasets / "line" / "oc_cammello.png") as im:
        rgb = np.asarray(im.convert("RGB"))
    x, y = most_detailed_window(rgb, 96)
    return Image.fromarray(rgb[y : y + 96, x : x + 80])  # odd width on purpose


@pytest.fixture(scope="module")
def adapted(line_crop: Image.Image):  # type: ignore[no-untyped-def]
    return adaptive_encode(line_crop, quality=3, config="fast", latent_iters=40, decoder_iters=40)


def test_adaptation_lowers_real_rd_cost_and_never_raises_it(adapted) -> None:  # type: ignore[no-untyped-def]
    costs = adapted.costs
    assert set(costs) == {"plain", "latents", "latents+adapters"}
    assert costs[adapted.choice] == min(costs.values())
    assert costs[adapted.choice] <= costs["plain"]
    assert costs["latents"] < costs["plain"]  # 40 SGA steps already help on a line drawing


def test_adapted_bitstream_decodes_identically_in_a_fresh_process(adapted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = adapted.result.data
    here = decode_image(data, bit_exact=True).rgb  # as the encoder verified it
    assert np.array_equal(here, adapted.result.decoded.rgb)
    (tmp_path / "a.udic").write_bytes(data)
    script = textwrap.dedent(f"""
        import sys, numpy as np, torch
        sys.path.insert(0, {str(ROOT)!r})
        torch.set_num_threads(2)
        from codec.coder import decode_image
        data = open({str(tmp_path / "a.udic")!r}, "rb").read()
        np.save({str(tmp_path / "a.npy")!r}, decode_image(data, bit_exact=True).rgb)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    assert np.array_equal(np.load(tmp_path / "a.npy"), here)


def _forced(line_crop: Image.Image, decoder: str) -> bytes:
    """A bitstream that carries adapters (or OMP) whatever the final choice would be."""
    import torch

    from codec.adaptation.adapters import dequantised_omp, pack_adapters, pack_omp
    from codec.adaptation.encoder import AdaptiveEncoder, resolve_config
    from codec.imageio import load_image
    from codec.progress import no_progress
    from codec.zoo import default_registry

    reg = default_registry()
    base = reg.get("default")
    cfg = resolve_config("fast", latent_iters=5, decoder_iters=30, decoder=decoder)
    enc = AdaptiveEncoder(base, load_image(line_crop), 2.0, cfg, torch.device("cpu"), no_progress, reg)
    with torch.no_grad():
        y0, z0 = enc.net.analysis(enc.x)
    yg, z = enc.refine_latents(y0, z0)
    if decoder == "omp":
        position, values = enc.train_omp(yg, z)
        return enc._code(yg, z, {Section.OMP: pack_omp(position, dequantised_omp(values))}).data
    trained = enc.train_adapters(yg, z)
    assert trained is not None
    specs, ints = trained
    return enc._code(yg, z, {Section.ADAPTERS: pack_adapters(specs, ints, cfg.delta, cfg.prior_scale)}, ints).data


def test_adapter_bytes_count_in_bpp(line_crop: Image.Image) -> None:
    data = _forced(line_crop, "adapters")
    info = read_header(data)
    assert info["sections"]["ADAPTERS"] > 0
    assert info["bpp"] == len(data) * 8 / (96 * 80)
    assert decode_image(data).rgb.shape == (96, 80, 3)


def _with_section(data: bytes, tag: Section, payload: bytes) -> bytes:
    c = Container.from_bytes(data)
    c.sections[tag] = payload
    return c.to_bytes()  # a valid CRC: only the content checks can catch it


def test_corrupted_adapter_sections_are_rejected(line_crop: Image.Image) -> None:
    data = _forced(line_crop, "adapters")
    decode_image(data)  # the intact file decodes
    section = Container.from_bytes(data).sections[Section.ADAPTERS]
    bad_payloads = [
        b"",  # empty
        section[:3],  # truncated header
        bytes([9]) + section[1:],  # unknown format
        section[:6] + bytes([99, 2, 48, 0]) + section[10:],  # position outside the model
        section[:6] + bytes([5, 2, 47, 0]) + section[10:],  # wrong channel count
        section[:10] + bytes(reversed(section[10:])),  # garbled weights: caught by the symbol hash
    ]
    for payload in bad_payloads:
        with pytest.raises(BitstreamError):
            decode_image(_with_section(data, Section.ADAPTERS, payload))


def test_omp_alternative_round_trips(line_crop: Image.Image) -> None:
    r = adaptive_encode(line_crop, quality=3, config="fast", latent_iters=5, decoder="omp", decoder_iters=20)
    assert "latents+omp" in r.costs and r.costs[r.choice] == min(r.costs.values())
    data = _forced(line_crop, "omp")
    channels = Registry().get("default").net.N
    assert read_header(data)["sections"]["OMP"] == 9 + channels  # position, range, one byte per channel
    decoded = decode_image(data).rgb
    assert decoded.shape == (96, 80, 3)
    for bad in (b"\x05\x00", b"\x05" + bytes(8) + bytes(47)):  # truncated; wrong channel count
        with pytest.raises(BitstreamError):
            decode_image(_with_section(data, Section.OMP, bad))


def test_time_budget_still_returns_a_valid_bitstream(line_crop: Image.Image) -> None:
    events: list[ProgressEvent] = []
    r = adaptive_encode(line_crop, quality=2, config="paper", time_budget_s=0.5, progress=events.append)
    assert np.array_equal(decode_image(r.result.data, bit_exact=True).rgb, r.result.decoded.rgb)
    assert r.costs[r.choice] <= r.costs["plain"]
    stages = {e.stage for e in events}
    assert "latent-refinement" in stages and events[-1].stage == "done"
    refined = [e for e in events if e.stage == "latent-refinement"]
    assert refined[-1].iteration < PRESETS["paper"].latent_iters  # the budget, not the count, stopped it
    assert all(e.bpp is not None and e.psnr is not None for e in refined)


def test_early_stop_on_flat_loss(line_crop: Image.Image) -> None:
    events: list[ProgressEvent] = []
    adaptive_encode(
        line_crop,
        quality=2,
        config="fast",
        latent_iters=400,
        decoder="none",
        early_stop_patience=3,
        early_stop_tol=0.5,
        progress=events.append,
    )
    assert max(e.iteration for e in events if e.stage == "latent-refinement") < 400


def test_sga_rounds_in_the_limit_and_schedule_shape() -> None:
    import torch

    x = torch.linspace(-3, 3, 1000)  # 1001 points would hold exact .5 ties (-1.5), a coin toss
    soft = sga_round(x, 1e-4)
    assert torch.allclose(soft, torch.round(x), atol=1e-3)
    warm = sga_round(x, 0.5)
    assert ((warm - x).abs() < 1.0).all() and not torch.equal(warm, torch.round(x))  # soft, within one bin
    assert sga_temperature(0, 2000) == 0.5 and sga_temperature(700, 2000) == 0.5
    assert sga_temperature(2000, 2000) == pytest.approx(0.5 * np.exp(-1.3))
    assert sga_temperature(100, 100) == pytest.approx(0.5 * np.exp(-1.3))


def test_adapter_weight_coding_round_trips() -> None:
    values = [0, 1, -1, 3, -7, 0, 0, 250, -300, 2]  # includes values that need rANS bypass coding
    data = encode_ints(values, 0.06, 0.05)
    assert decode_ints(data, len(values), 0.06, 0.05) == values


@pytest.mark.parametrize("after", ["default", 1, "last"])
def test_folded_decode_matches_applying_the_map_to_the_features(after: object) -> None:
    """The decoder folds adapters (I + BA) and OMP scales into the next convolution; that must be
    the same function as applying them to the feature map (up to float rounding), wherever they sit."""
    import torch

    from codec.adaptation.adapters import apply_adapter
    from codec.adaptation.decoding import run_folded
    from codec.adaptation.synthesis import channels_after, default_adapter_positions, run_layers
    from codec.zoo import Registry

    g_s = Registry().get("default").net.g_s
    pos = {"default": default_adapter_positions(g_s)[0], "last": len(g_s) - 1}.get(after, after)  # type: ignore[call-overload]
    c = channels_after(g_s, pos)
    torch.manual_seed(0)
    a, b, s = torch.randn(2, c) * 0.1, torch.randn(c, 2) * 0.1, torch.rand(c) + 0.5
    y = torch.randn(1, 128, 4, 4)
    with torch.no_grad():
        ref = run_layers(g_s, y, hooks={pos: lambda f: apply_adapter(f, a, b)})
        folded = run_folded(g_s, y, {pos: torch.eye(c) + b @ a})
        ref_omp = run_layers(g_s, y, hooks={pos: lambda f: f * s.view(1, -1, 1, 1)})
        folded_omp = run_folded(g_s, y, {pos: torch.diag(s)})
    assert ref.shape == folded.shape
    assert torch.allclose(ref, folded, atol=1e-5) and torch.allclose(ref_omp, folded_omp, atol=1e-5)
    assert not torch.allclose(ref, run_layers(g_s, y), atol=1e-3)  # the map does change the output


@pytest.mark.parametrize("kind", ["deconv", "conv"])
def test_an_adapter_pushed_through_the_linear_output_layer_is_the_same_function(kind: str) -> None:
    """The adapter stage computes ``layer(f) + layer0(B A f)`` instead of ``layer(f + B A f)``
    (codec.adaptation.synthesis.low_rank_through); the two must agree up to float rounding."""
    import torch
    from torch import nn

    from codec.adaptation.adapters import apply_adapter
    from codec.adaptation.synthesis import default_adapter_positions, linear_tail, low_rank_through, run_layers
    from codec.zoo import Registry

    torch.manual_seed(0)
    if kind == "deconv":  # the embedded default's own synthesis, at its default adapter position
        g_s = Registry().get("default").net.g_s
        pos = default_adapter_positions(g_s)[0]
        x = torch.randn(1, 128, 4, 6)
    else:
        g_s = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 5, stride=2, padding=2))
        pos, x = 1, torch.randn(1, 3, 16, 12)
    layer = linear_tail(g_s, pos)
    assert layer is g_s[pos + 1]
    c = layer.in_channels
    a, b = torch.randn(2, c) * 0.3, torch.randn(c, 2) * 0.3
    with torch.no_grad():
        ref = run_layers(g_s, x, hooks={pos: lambda f: apply_adapter(f, a, b)})
        feat = run_layers(g_s, x, 0, pos + 1)
        pushed = layer(feat) + low_rank_through(layer, b, torch.einsum("rc,nchw->nrhw", a, feat))
    assert ref.shape == pushed.shape
    assert torch.allclose(ref, pushed, atol=1e-5)
    assert not torch.allclose(ref, layer(feat), atol=1e-3)  # the adapter does change the output


def test_an_adapter_not_right_before_a_plain_output_convolution_runs_the_layers() -> None:
    from torch import nn

    from codec.adaptation.synthesis import linear_tail

    g_s = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 3, 3, groups=1))
    assert linear_tail(g_s, 3) is g_s[4]
    assert linear_tail(g_s, 1) is None  # two layers after it, one of them non-linear
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2))
    assert linear_tail(grouped, 1) is None


def test_the_pushed_adapter_trains_like_the_layered_one(line_crop: Image.Image) -> None:
    """Pushing the adapter through the output layer (the default) must train the same adapter as
    running the layers: the same loss curve, up to float rounding (the layers run in bf16 on a bf16
    CPU, the pushed path in fp32)."""
    kwargs: dict[str, object] = {"quality": 3, "config": "fast", "latent_iters": 10, "decoder_iters": 30}
    pushed = adaptive_encode(line_crop, **kwargs)  # type: ignore[arg-type]
    layered = adaptive_encode(line_crop, push_adapters=False, **kwargs)  # type: ignore[arg-type]
    p, lay = ([e[3] for e in r.curve if e[0] == "adapters"] for r in (pushed, layered))
    assert len(p) == len(lay) == 30
    assert abs(p[-1] - lay[-1]) / lay[-1] < 0.02
    assert p[-1] < p[0]  # it did train
