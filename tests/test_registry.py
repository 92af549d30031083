"""Model registry: the embedded model, local checkpoints, and the zoo's real (offline) path."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.coder import decode_image, encode_report, read_header
from codec.models.gained import GainedMeanScaleHyperprior
from codec.zoo import ModelError, ModelUnavailableError, Registry
from codec.zoo.registry import WEIGHTS_DIR
from tests.conftest import synthetic_rgb


def test_embedded_model_is_small_and_has_tables() -> None:
    path = WEIGHTS_DIR / "default.pt"
    assert path.stat().st_size < 3_000_000
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["state_dict"]["gaussian_conditional._quantized_cdf"].numel() > 0
    assert state["state_dict"]["entropy_bottleneck._quantized_cdf"].numel() > 0
    reg = Registry()
    m = reg.get("default")
    assert reg.get("default") is m  # loaded once, reused
    assert m.quality_range == (1.0, 6.0)


def test_rate_estimates_stay_finite_for_far_outliers() -> None:
    """The fp16 file flushes the 1e-9 likelihood floors to 0; the loader keeps the real floors,
    so an estimate for a latent far from its mean is large but finite (a NaN optimisation
    otherwise, and an entropy coder that never returns)."""
    from codec.adaptation.rate import y_bits, z_bits

    net = Registry().get("default").net
    assert float(net.gaussian_conditional.likelihood_lower_bound.bound) == pytest.approx(1e-9)
    far = torch.full((1, net.M, 1, 1), 1e4)
    assert torch.isfinite(y_bits(net.gaussian_conditional, far, torch.full_like(far, 0.11), torch.zeros_like(far)))
    assert torch.isfinite(z_bits(net.entropy_bottleneck, torch.full((1, net.N, 1, 1), 1e4)))


def test_non_finite_latents_are_refused_before_entropy_coding() -> None:
    net = Registry().get("default").net
    y = torch.zeros(1, net.M, 1, 1)
    y[0, 3] = float("nan")
    with pytest.raises(FloatingPointError):
        net.compress_gained(y, torch.zeros(1, net.N, 1, 1), torch.tensor([2.0]))


def test_compressai_architecture_checkpoint_round_trip(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from compressai.zoo import mbt2018_mean

    torch.manual_seed(0)
    net = mbt2018_mean(quality=1, pretrained=False)  # untrained weights: the code path is what matters
    ckpt = tmp_path / "msh.pth"
    torch.save(net.state_dict(), ckpt)
    reg = Registry()
    reg.register_checkpoint("my-msh", ckpt, "mbt2018-mean")
    rgb = synthetic_rgb(64, 64)
    r = encode_report(Image.fromarray(rgb), model="my-msh", registry=reg)
    assert read_header(r.data)["model"] == "my-msh"
    assert np.array_equal(decode_image(r.data, registry=reg).rgb, r.decoded.rgb)


def test_training_checkpoint_registers_as_model(tmp_path: Path) -> None:
    net = GainedMeanScaleHyperprior(16, 24, [0.002, 0.02])
    ckpt = tmp_path / "tiny.pt"
    torch.save({"config": {"N": 16, "M": 24, "lambdas": [0.002, 0.02]}, "model": net.state_dict()}, ckpt)
    reg = Registry()
    reg.register_checkpoint("tiny", ckpt)
    r = encode_report(Image.fromarray(synthetic_rgb(40, 40)), model="tiny", quality=1.5, registry=reg)
    assert np.array_equal(decode_image(r.data, registry=reg).rgb, r.decoded.rgb)


def test_checkpoint_without_architecture_is_a_clear_error(tmp_path: Path) -> None:
    ckpt = tmp_path / "plain.pth"
    torch.save({"w": torch.zeros(1)}, ckpt)
    reg = Registry()
    reg.register_checkpoint("plain", ckpt)
    with pytest.raises(ModelError, match="needs an architecture"):
        reg.get("plain")
    reg.register_checkpoint("gone", tmp_path / "missing.pth", "mbt2018-mean")
    with pytest.raises(ModelUnavailableError, match="missing"):
        reg.get("gone")
    bad = tmp_path / "bad.pt"
    torch.save(
        {"config": {"N": 16, "M": 24, "lambdas": [0.1]}, "model": GainedMeanScaleHyperprior(16, 24).state_dict()}, bad
    )
    reg.register_checkpoint("bad", bad)
    with pytest.raises(ModelError, match="does not fit"):
        reg.get("bad")


def test_zoo_loads_the_real_way_or_names_the_cause() -> None:
    """Offline (here and in CI) the real compressai.zoo download fails: one clear message."""
    reg = Registry()
    try:
        m = reg.get("bmshj2018-hyperprior", 1)
    except ModelUnavailableError as exc:
        msg = str(exc)
        assert "could not be downloaded" in msg and "checkpoints" in msg
    else:  # weights cached locally or internet present: then it must really work
        assert m.quality_range == (1.0, 8.0)
        r = encode_report(Image.fromarray(synthetic_rgb(64, 64)), model="bmshj2018-hyperprior", quality=1, registry=reg)
        assert decode_image(r.data, registry=reg).rgb.shape == (64, 64, 3)
