"""Few-shot domain adapters: train a tiny one in seconds, code with it, refuse what does not fit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from codec.bitstream import Container, Field
from codec.coder import decode_image, encode_report, read_header
from codec.datasets import bench_images
from codec.domains.store import DomainStore
from codec.domains.train import train_domain
from codec.imageio import CodecImage
from codec.zoo import ModelMismatchError, Registry, UnknownModelError
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory, datasets: Path) -> tuple[Registry, str, list[CodecImage]]:
    root = tmp_path_factory.mktemp("domains")
    imgs = [CodecImage(rgb=b.rgb[:128, :128].copy()) for b in bench_images("pixel", 5)]
    reg = Registry(domains_dir=root)
    base = reg.get("default")
    trained = train_domain(base.net, imgs, steps=12, stage2_steps=4, batch=2, crop=64, lr=2e-3)
    assert trained.n_train == 4 and trained.n_val == 1 and trained.steps == (12, 4)
    rec = reg.domains.save("pixelart", "default", base.hash, trained)
    assert rec.id.startswith("pixelart-") and len(rec.hash) == 8
    return reg, rec.id, imgs


def test_encode_with_domain_decodes_identically_in_a_fresh_process(domain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    reg, domain_id, imgs = domain
    r = encode_report(imgs[0], quality=3, registry=reg, domain=domain_id)
    assert read_header(r.data)["domain"] == domain_id
    here = decode_image(r.data, registry=reg, bit_exact=True).rgb  # as the encoder verified it
    assert np.array_equal(here, r.decoded.rgb)
    (tmp_path / "d.udic").write_bytes(r.data)
    script = textwrap.dedent(f"""
        import sys, numpy as np, torch
        sys.path.insert(0, {str(ROOT)!r})
        torch.set_num_threads(2)
        from pathlib import Path
        from codec.zoo import Registry
        from codec.coder import decode_image
        reg = Registry(domains_dir=Path({str(reg.domains.root)!r}))
        data = open({str(tmp_path / "d.udic")!r}, "rb").read()
        np.save({str(tmp_path / "d.npy")!r}, decode_image(data, registry=reg, bit_exact=True).rgb)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    assert np.array_equal(np.load(tmp_path / "d.npy"), here)


def test_decoder_needs_only_the_decoder_side(domain) -> None:  # type: ignore[no-untyped-def]
    reg, domain_id, _ = domain
    dec_only = reg.domain_model("default", domain_id, with_encoder=False)
    full = reg.domain_model("default", domain_id)
    assert reg.domain_model("default", domain_id) is full  # cached: a stream of decodes loads it once
    for a, b in zip(dec_only.net.g_s.parameters(), full.net.g_s.parameters(), strict=True):
        assert torch.equal(a, b)


def test_unknown_or_altered_domain_adapter_is_refused_by_name(domain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    reg, domain_id, imgs = domain
    data = encode_report(imgs[1], quality=2, registry=reg, domain=domain_id).data
    elsewhere = Registry(domains_dir=tmp_path / "empty")
    with pytest.raises(UnknownModelError, match=domain_id):
        decode_image(data, registry=elsewhere)
    c = Container.from_bytes(data)
    c.fields[Field.DOMAIN_HASH] = b"\x00" * 8
    with pytest.raises(ModelMismatchError, match=domain_id):
        decode_image(c.to_bytes(), registry=Registry(domains_dir=reg.domains.root))
    with pytest.raises(UnknownModelError):
        encode_report(imgs[1], quality=2, registry=reg, domain="no-such-domain")


def test_store_lists_with_measured_gain(domain) -> None:  # type: ignore[no-untyped-def]
    reg, domain_id, _ = domain
    listed = {r.id: r for r in DomainStore(reg.domains.root).list()}
    assert domain_id in listed
    summary = listed[domain_id].summary()
    assert summary["base_model"] == "default" and isinstance(summary["gain_pct"], float)


def test_auto_picks_the_cheapest_candidate(domain) -> None:  # type: ignore[no-untyped-def]
    from codec.domains.auto import choose_domain

    reg, domain_id, imgs = domain
    best, costs = choose_domain(reg, "default", imgs[2], 2.0)
    assert set(costs) == {"none", domain_id}
    assert costs[best or "none"] == min(costs.values())
    r = encode_report(imgs[2], quality=3, registry=reg, domain="auto")
    assert read_header(r.data)["domain"] == best


def test_validation_keeps_the_identity_when_training_only_hurts() -> None:
    """An absurd learning rate wrecks every trained state; validation-based selection (seed 004)
    must then return the identity adapters (gain 0), never a model worse than the base."""
    imgs = [CodecImage(rgb=b.rgb[:128, :128].copy()) for b in bench_images("line", 5)]
    base = Registry().get("default").net
    trained = train_domain(base, imgs, steps=6, stage2_steps=2, batch=2, crop=64, lr=5.0, stage2_lr=5.0, validations=3)
    assert trained.gain_pct == 0.0
    convs = [(k, t) for k, t in trained.decoder.items() if k.startswith("g_s.") and k.endswith(".weight")]
    assert convs
    for key, t in convs:  # the 1x1 Conv-adapters are exactly the identity again
        assert torch.equal(t, torch.eye(t.shape[0]).view_as(t)), key


def test_per_image_adaptation_runs_on_top_of_a_domain_adapter(domain) -> None:  # type: ignore[no-untyped-def]
    """Both adaptations at once: the baked domain model must be usable under autograd."""
    from codec.adaptation.encoder import adaptive_encode

    reg, domain_id, imgs = domain
    out = adaptive_encode(
        imgs[1], quality=3, config="fast", registry=reg, domain=domain_id, latent_iters=4, decoder_iters=3
    )
    assert read_header(out.result.data)["domain"] == domain_id
    assert np.array_equal(decode_image(out.result.data, registry=reg, bit_exact=True).rgb, out.result.decoded.rgb)
    assert out.costs[out.choice] <= out.costs["plain"]
