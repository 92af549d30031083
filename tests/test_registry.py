"""Model registry: the embedded model, local checkpoints, and the zoo's real (offline) path."""

from __future__ import annotations

import ast
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.coder import decode_image, encode_report, read_header
from codec.models.gained import GainedMeanScaleHyperprior
from codec.zoo import (
    CheckpointSpec,
    InvalidQualityError,
    ModelError,
    ModelUnavailableError,
    Registry,
    UnknownModelError,
    default_registry,
    parse_checkpoint,
    parse_checkpoints,
    shared_registry,
)
from codec.zoo.cache import LRUCache
from codec.zoo.registry import WEIGHTS_DIR
from tests.conftest import synthetic_rgb


def test_embedded_model_is_small_and_has_tables() -> None:
    path = WEIGHTS_DIR / "default.pt"
    assert path.stat().st_size < 6_000_000  # in the repo and in every image: fp16 (N=96: 4.9 MB)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["state_dict"]["gaussian_conditional._quantized_cdf"].numel() > 0
    assert state["state_dict"]["entropy_bottleneck._quantized_cdf"].numel() > 0
    reg = Registry()
    m = reg.get("default")
    assert reg.get("default") is m  # loaded once, reused
    assert m.quality_range == (1.0, 6.0)


def _default_net() -> GainedMeanScaleHyperprior:
    net = Registry().get("default").net
    assert isinstance(net, GainedMeanScaleHyperprior)
    return net


def test_rate_estimates_stay_finite_for_far_outliers() -> None:
    """The fp16 file flushes the 1e-9 likelihood floors to 0; the loader keeps the real floors,
    so an estimate for a latent far from its mean is large but finite (a NaN optimisation
    otherwise, and an entropy coder that never returns)."""
    from codec.adaptation.rate import y_bits, z_bits

    net = _default_net()
    assert float(net.gaussian_conditional.likelihood_lower_bound.bound) == pytest.approx(1e-9)
    far = torch.full((1, net.M, 1, 1), 1e4)
    assert torch.isfinite(y_bits(net.gaussian_conditional, far, torch.full_like(far, 0.11), torch.zeros_like(far)))
    assert torch.isfinite(z_bits(net.entropy_bottleneck, torch.full((1, net.Nh, 1, 1), 1e4)))


def test_non_finite_latents_are_refused_before_entropy_coding() -> None:
    net = _default_net()
    y = torch.zeros(1, net.M, 1, 1)
    y[0, 3] = float("nan")
    with pytest.raises(FloatingPointError):
        net.compress_gained(y, torch.zeros(1, net.Nh, 1, 1), torch.tensor([2.0]))


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
    assert np.array_equal(decode_image(r.data, registry=reg, bit_exact=True).rgb, r.decoded.rgb)


def test_training_checkpoint_registers_as_model(tmp_path: Path) -> None:
    net = GainedMeanScaleHyperprior(16, 24, [0.002, 0.02])
    ckpt = tmp_path / "tiny.pt"
    torch.save({"config": {"N": 16, "M": 24, "lambdas": [0.002, 0.02]}, "model": net.state_dict()}, ckpt)
    reg = Registry()
    reg.register_checkpoint("tiny", ckpt)
    r = encode_report(Image.fromarray(synthetic_rgb(40, 40)), model="tiny", quality=1.5, registry=reg)
    assert np.array_equal(decode_image(r.data, registry=reg, bit_exact=True).rgb, r.decoded.rgb)


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


# ---------------------------------------------------------------- naming, caching, settings
def test_checkpoint_entries_parse_as_documented(tmp_path: Path) -> None:
    """``NAME=PATH[@ARCH]`` (the form the docs, the CLI and UDIC_CHECKPOINTS use), or a bare path."""
    assert parse_checkpoint("msh=/m/a.pth@mbt2018-mean") == CheckpointSpec("msh", Path("/m/a.pth"), "mbt2018-mean")
    assert parse_checkpoint("tiny=/m/tiny.pt") == CheckpointSpec("tiny", Path("/m/tiny.pt"), None)
    assert parse_checkpoint("/m/run.v2.pt") == CheckpointSpec("run.v2", Path("/m/run.v2.pt"), None)
    assert parse_checkpoint("/m/b.pth@mbt2018") == CheckpointSpec("b", Path("/m/b.pth"), "mbt2018")
    specs = parse_checkpoints(os.pathsep.join(["a=/x/a.pt", "", "/y/b.pth@mbt2018-mean"]))
    assert [s.name for s in specs] == ["a", "b"]
    reg = Registry(domains_dir=tmp_path / "d", checkpoints=specs)
    assert reg.names()[-2:] == ["a", "b"] and reg.domains.root == tmp_path / "d"
    with pytest.raises(ModelError, match="built-in"):
        Registry(checkpoints=[CheckpointSpec("default", Path("x.pt"))])


def test_lru_cache_keeps_the_most_recent() -> None:
    cache: LRUCache[tuple[str, int], str] = LRUCache(2)
    cache.put(("a", 0), "A")
    cache.put(("b", 0), "B")
    assert cache.get(("a", 0)) == "A"  # now the most recent
    cache.put(("c", 0), "C")
    assert ("b", 0) not in cache and len(cache) == 2
    loads: list[str] = []

    def load(value: str) -> str:
        loads.append(value)
        return value

    assert cache.get_or_load(("d", 1), lambda: load("D")) == "D"
    assert cache.get_or_load(("d", 1), lambda: load("X")) == "D" and loads == ["D"]
    cache.discard_where(lambda key: key[0] == "d")
    assert ("d", 1) not in cache


def test_shared_registry_is_one_per_configuration(tmp_path: Path) -> None:
    a = shared_registry(capacity=3, domains_dir=tmp_path)
    assert shared_registry(capacity=3, domains_dir=tmp_path) is a
    assert shared_registry(capacity=3, domains_dir=tmp_path / "other") is not a
    assert default_registry() is default_registry() and default_registry().domains.root == Path("var/storage/domains")


def test_quality_and_lambda_rules() -> None:
    reg = Registry()
    base, level = reg.resolve("default", 2.5)
    assert level == pytest.approx(1.5) and base.level_for(lmbda=base.lambdas[0]) == pytest.approx(0.0, abs=1e-2)
    with pytest.raises(InvalidQualityError, match="between 1 and 6"):
        reg.resolve("default", 7)
    with pytest.raises(InvalidQualityError, match="not both"):
        base.level_for(2, 0.01)
    with pytest.raises(InvalidQualityError, match="positive"):
        base.level_for(lmbda=0)
    with pytest.raises(InvalidQualityError, match="fixed rates"):
        reg.resolve("mbt2018-mean", lmbda=0.01)
    with pytest.raises(InvalidQualityError, match="whole qualities"):
        reg.resolve("mbt2018-mean", 2.5)
    with pytest.raises(InvalidQualityError, match="needs a quality"):
        reg.get("mbt2018-mean")
    with pytest.raises(UnknownModelError, match="unknown model"):
        reg.get("nope")


def test_service_registry_comes_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """UDIC_CHECKPOINTS and UDIC_DOMAINS_DIR are Settings fields; API and worker get the same registry."""
    from service.core.config import Settings
    from service.core.model_registry import registry_for

    monkeypatch.setenv("UDIC_CHECKPOINTS", f"mine={tmp_path / 'm.pth'}@mbt2018-mean")
    monkeypatch.setenv("UDIC_STORAGE_ROOT", str(tmp_path / "storage"))
    settings = Settings()
    reg = registry_for(settings)
    assert "mine" in reg.names() and reg.domains.root == tmp_path / "storage" / "domains"
    assert reg.capacity == settings.decode_cache_models and registry_for(Settings()) is reg
    monkeypatch.setenv("UDIC_DOMAINS_DIR", str(tmp_path / "dom"))
    assert registry_for(Settings()).domains.root == tmp_path / "dom"


def test_the_stack_passes_settings_to_its_children(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.stack import Stack

    monkeypatch.delenv("UDIC_STORAGE_ROOT", raising=False)
    monkeypatch.setenv("UDIC_MAX_PIXELS", "1234")
    env = Stack(tmp_path, 8001, 6390).env
    assert env["UDIC_STORAGE_ROOT"] == str(tmp_path / "storage") and env["UDIC_MAX_PIXELS"] == "1234"
    assert env["UDIC_REDIS_URL"] == "redis://127.0.0.1:6390/0"
    monkeypatch.setenv("UDIC_STORAGE_ROOT", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("UDIC_PORT", "8123")
    stack = Stack(tmp_path, 8001, 6390)
    assert stack.env["UDIC_STORAGE_ROOT"] == str(tmp_path / "elsewhere") and stack.settings.port == 8123


def test_only_the_settings_read_udic_variables() -> None:
    """The codec takes explicit arguments; the service reads UDIC_* through Settings only. The one
    exception is the datasets folder of tests and benchmarks (codec.datasets, documented there)."""
    root = Path(__file__).resolve().parent.parent
    allowed = {root / "service" / "core" / "config.py", root / "codec" / "datasets.py"}
    readers = []
    for path in [p for pkg in ("codec", "service", "worker") for p in (root / pkg).rglob("*.py")]:
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv")
            item = isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ"
            if call or item:
                key = node.args[0] if isinstance(node, ast.Call) and node.args else getattr(node, "slice", None)
                if isinstance(key, ast.Constant) and not str(key.value).startswith("UDIC_"):
                    continue  # another program's variable (OMP_WAIT_POLICY, ...): recorded, not configuration
                readers.append(f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}")
    assert not readers
