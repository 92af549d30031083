"""Bitstreams made with older embedded weights keep decoding (issue 10; codec/zoo/versions.py).

A "previous" version is made here by perturbing the shipped weights and exporting them the way
``codec.training.export`` does (tables computed from the exported weights), into a temporary
previous-folder; the registry's current default stays the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.bitstream import Container, Field, Section
from codec.cli import main
from codec.coder import PAD_MULTIPLE, decode_image, encode_report, read_header, to_uint8
from codec.determinism import canonical_compute
from codec.training.export import export
from codec.zoo import ModelError, ModelMismatchError, ModelUnavailableError, Registry, UnknownModelError
from codec.zoo.base import BaseModel
from codec.zoo.loaders import load_gained_file
from codec.zoo.registry import WEIGHTS_DIR, default_registry
from codec.zoo.retire import retire
from codec.zoo.versions import PreviousWeights
from tests.conftest import synthetic_rgb

H, W = 64, 96


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(previous-folder, hash) holding one version: the shipped weights with one g_s layer scaled."""
    work, folder = tmp_path_factory.mktemp("ckpt"), tmp_path_factory.mktemp("previous")
    state = torch.load(WEIGHTS_DIR / "default.pt", map_location="cpu", weights_only=True)
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in state["state_dict"].items()}
    key = next(k for k in sorted(sd) if k.startswith("g_s.") and k.endswith(".weight"))
    sd[key] = sd[key] * 1.05
    torch.save({"config": state["config"], "model": sd, "step": 0}, work / "ckpt.pt")
    export(work / "ckpt.pt", work / "old.pt")
    # named by the hash a decoder sees (the loader's, as retire does): the shipped file's likelihood
    # floors were flushed to 0, which export's own hash counts but every loader replaces
    weights_hash = load_gained_file(work / "old.pt", "default").hash.hex()
    shutil.move(work / "old.pt", folder / f"{weights_hash}.pt")
    return folder, weights_hash


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.fromarray(synthetic_rgb(H, W))


def _decode_with(model: BaseModel, data: bytes) -> np.ndarray:
    """Decode with one model directly, bypassing names and hashes."""
    c = Container.from_bytes(data)
    level = struct.unpack("<f", c.require(Field.LEVEL))[0]
    strings = [[c.section(Section.Y)], [c.section(Section.Z)]]
    shape = (-(-H // PAD_MULTIPLE), -(-W // PAD_MULTIPLE))
    with canonical_compute():
        x_hat, _ = model.decompress(strings, shape, level)
    return to_uint8(x_hat[..., :H, :W])


def _rehash(data: bytes, weights_hash: bytes) -> bytes:
    c = Container.from_bytes(data)
    c.fields[Field.MODEL_HASH] = weights_hash
    return c.to_bytes()


def test_previous_version_encodes_by_name_and_its_files_decode(
    previous: tuple[Path, str], image: Image.Image, tmp_path: Path
) -> None:
    folder, old = previous
    reg = Registry(domains_dir=tmp_path, previous_dir=folder)
    current = reg.get("default").hash.hex()
    assert old != current and reg.names()[:2] == ["default", f"default@{old}"]
    res = encode_report(image, model=f"default@{old}", quality=3, registry=reg)
    header = read_header(res.data)
    assert header["model"] == "default" and header["model_hash"] == old  # what the old release wrote
    # a fresh registry (current default = the real one) decodes it with the kept version
    fresh = Registry(domains_dir=tmp_path, previous_dir=folder)
    decoded = decode_image(res.data, registry=fresh, bit_exact=True)  # canonical, like _decode_with
    direct = _decode_with(PreviousWeights(folder).load(old), res.data)
    assert np.array_equal(decoded.rgb, direct)
    assert not np.array_equal(direct, _decode_with(reg.get("default"), res.data))  # the version matters


def test_unknown_weights_are_refused_naming_the_version(
    previous: tuple[Path, str], image: Image.Image, tmp_path: Path
) -> None:
    folder, old = previous
    reg = Registry(domains_dir=tmp_path, previous_dir=folder)
    current = reg.get("default").hash.hex()
    data = _rehash(encode_report(image, quality=2, registry=reg).data, b"\x12" * 8)
    with pytest.raises(ModelMismatchError) as err:
        decode_image(data, registry=reg)
    msg = str(err.value)
    assert "this file was made with default@1212121212121212" in msg
    assert f"this server's default@{current}" in msg and f"previous versions here: default@{old}" in msg
    with pytest.raises(ModelMismatchError, match="previous versions here: none"):
        decode_image(data, registry=Registry(domains_dir=tmp_path, previous_dir=tmp_path / "empty"))


def test_version_names(previous: tuple[Path, str], tmp_path: Path) -> None:
    folder, old = previous
    reg = Registry(domains_dir=tmp_path, previous_dir=folder)
    current = reg.get("default")
    assert reg.get(f"default@{current.hash.hex()}") is current  # the current version: one copy
    assert reg.get(f"default@{old}").name == "default" and reg.get(f"default@{old}").hash.hex() == old
    with pytest.raises(UnknownModelError, match="16 lowercase hex"):
        reg.get("default@XYZ")
    with pytest.raises(UnknownModelError, match=f"kept versions: default@{old}"):
        reg.get("default@" + "0" * 16)
    with pytest.raises(ModelError, match="built-in"):
        reg.register_checkpoint(f"default@{old}", tmp_path / "x.pt")


def test_a_kept_file_must_hash_to_its_name(previous: tuple[Path, str], tmp_path: Path) -> None:
    folder, old = previous
    shutil.copyfile(folder / f"{old}.pt", tmp_path / f"{'a' * 16}.pt")
    with pytest.raises(ModelUnavailableError, match="not the one its name says"):
        Registry(domains_dir=tmp_path, previous_dir=tmp_path).get("default@" + "a" * 16)


def test_retire_keeps_the_current_default(tmp_path: Path) -> None:
    weights_hash, path = retire(WEIGHTS_DIR / "default.pt", tmp_path / "previous")
    assert path == tmp_path / "previous" / f"{weights_hash}.pt"
    reg = Registry(domains_dir=tmp_path, previous_dir=tmp_path / "previous")
    assert f"default@{weights_hash}" in reg.names()
    assert PreviousWeights(tmp_path / "previous").load(weights_hash).hash == reg.get("default").hash
    assert retire(WEIGHTS_DIR / "default.pt", tmp_path / "previous") == (weights_hash, path)  # again: harmless


def _udic(*args: str | Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, err.getvalue()


def test_cli_encodes_with_a_version_and_refuses_unknown_ones(
    previous: tuple[Path, str], image: Image.Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, old = previous
    monkeypatch.setattr(default_registry(), "previous", PreviousWeights(folder))
    image.save(tmp_path / "in.png")
    code, err = _udic("encode", tmp_path / "in.png", "-o", tmp_path / "a.udic", "-m", f"default@{old}", "-q", "2")
    assert code == 0, err
    assert _udic("decode", tmp_path / "a.udic", "-o", tmp_path / "a.png")[0] == 0
    (tmp_path / "b.udic").write_bytes(_rehash((tmp_path / "a.udic").read_bytes(), b"\x34" * 8))
    code, err = _udic("decode", tmp_path / "b.udic", "-o", tmp_path / "b.png")
    assert code == 3 and err.count("\n") == 1 and "made with default@3434343434343434" in err


def test_api_validates_decodes_and_lists_versions(
    previous: tuple[Path, str], image: Image.Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service import decoding
    from service.api.routes import jobs, system
    from service.core.errors import ProblemError
    from udic_jobs import EncodePayload

    folder, old = previous
    reg = Registry(domains_dir=tmp_path, previous_dir=folder)
    for module in (decoding, jobs, system):
        monkeypatch.setattr(module, "registry", lambda: reg)
    jobs._check_payload(EncodePayload(model=f"default@{old}", quality=2.0), "alice")  # a valid model name
    data = encode_report(image, model=f"default@{old}", quality=2, registry=reg).data
    png, _ = decoding.decode_to_png(data)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), decode_image(data, reg).rgb)
    with pytest.raises(ProblemError) as err:
        decoding.decode_to_png(_rehash(data, b"\x56" * 8))
    assert (
        err.value.status == 422
        and err.value.kind == "model-mismatch"
        and "default@5656565656565656" in err.value.detail
    )
    listed = {m.name: m for m in asyncio.run(system.models()) if m.name.startswith("default")}
    assert listed[f"default@{old}"].available and listed[f"default@{old}"].hash == old
    assert listed["default"].hash == reg.get("default").hash.hex()
