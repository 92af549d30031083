"""``codec.pipeline``: one request type, one encode function, used by the CLI, the worker and eval.

What matters here is that every caller gets the same encode for the same request (the copies of
the branching drifted before: the CLI dropped ``--domain`` with ``--adapt``), and that the outcome
says everything a caller reports without reading the bitstream back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec import pipeline
from codec.adaptation.config import PRESET_NAMES, PRESETS
from codec.cli import build_parser
from codec.coder import encode_report, read_header
from codec.evaluation.compare import our_points
from codec.imageio import ImageInputError
from codec.pipeline import EncodeRequest, encode
from codec.zoo import InvalidQualityError, Registry
from tests.conftest import synthetic_rgb
from tests.test_bitstream_pins import formula_domain
from tests.test_cli import udic


@pytest.fixture(scope="module")
def domain_registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, str]:
    reg = Registry(domains_dir=tmp_path_factory.mktemp("pipeline-domains"))
    return reg, formula_domain(reg)


@pytest.fixture
def picture() -> Image.Image:
    return Image.fromarray(synthetic_rgb(40, 48, seed=4))


def test_cli_keeps_the_domain_with_adapt(
    domain_registry: tuple[Registry, str], picture: Image.Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drift this module exists to end: ``udic encode --adapt ... --domain ID`` coded without the domain."""
    reg, domain_id = domain_registry
    monkeypatch.setattr(pipeline, "default_registry", lambda: reg)
    src, out = tmp_path / "p.png", tmp_path / "p.udic"
    picture.save(src)
    args: list[str | Path] = ["encode", src, "-o", out, "-q", "3", "--adapt", "fast", "--domain", domain_id, "--quiet"]
    proc = udic(*args, "--latent-iters", "3", "--decoder-iters", "2")
    assert proc.returncode == 0, proc.stderr
    assert read_header(out.read_bytes())["domain"] == domain_id


def test_outcome_carries_what_callers_report(domain_registry: tuple[Registry, str], picture: Image.Image) -> None:
    reg, domain_id = domain_registry
    request = EncodeRequest(quality=2.5, adaptation="fast", domain=domain_id, latent_iters=3, decoder_iters=2)
    outcome = encode(picture, request, registry=reg, device=torch.device("cpu"))
    header = read_header(outcome.data)
    assert outcome.domain == header["domain"] == domain_id
    assert outcome.quality == header["quality"] == 2.5
    assert outcome.choice in outcome.adaptive.costs
    metrics = outcome.metrics()
    assert metrics["bytes"] == len(outcome.data) == header["bytes"]
    assert metrics["adaptation"] == "fast" and metrics["adaptation_choice"] == outcome.choice
    assert metrics["domain"] == domain_id
    assert metrics["rd_saving_pct"] == round(outcome.rd_saving_pct, 3) >= 0.0


def test_plain_request_is_the_plain_encode(picture: Image.Image) -> None:
    """No adaptation: exactly ``encode_report``'s bytes, choice plain, nothing saved, no domain."""
    outcome = encode(picture, EncodeRequest(lmbda=0.01))
    assert outcome.data == encode_report(picture, lmbda=0.01).data
    assert (outcome.choice, outcome.rd_saving_pct, outcome.domain) == ("plain", 0.0, None)
    assert outcome.metrics()["adaptation"] == "none"
    assert outcome.quality == pytest.approx(outcome.result.level + 1.0)


def test_request_config_applies_overrides_and_refuses_unknown_presets() -> None:
    cfg = EncodeRequest(adaptation="balanced", latent_iters=7, time_budget_s=2.0).config()
    assert (cfg.latent, cfg.latent_iters, cfg.decoder_iters, cfg.time_budget_s) == ("dr", 7, 200, 2.0)
    assert EncodeRequest(adaptation=PRESETS["paper"]).adaptation_name == "custom"
    with pytest.raises(InvalidQualityError, match="preset"):  # before the (unreadable) image is read
        encode(b"not an image", EncodeRequest(adaptation="turbo"))
    with pytest.raises(ImageInputError):
        encode(b"not an image", EncodeRequest())


def test_cli_offers_exactly_the_presets(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for name in PRESET_NAMES:
        assert parser.parse_args(["encode", "x.png", "--adapt", name]).adapt == name
    with pytest.raises(SystemExit):
        parser.parse_args(["encode", "x.png", "--adapt", "turbo"])
    assert "invalid choice" in capsys.readouterr().err


def test_eval_runner_codes_like_the_library() -> None:
    rgb = synthetic_rgb(36, 44, seed=5)
    _, _, run = our_points("default", [2.0], "none")
    data, decoded, _, _ = run(rgb, 2.0)
    expected = encode_report(Image.fromarray(rgb), quality=2.0)
    assert data == expected.data
    assert np.array_equal(decoded, expected.decoded.rgb)
