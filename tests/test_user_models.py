"""``udic models add NAME PATH --arch ARCH`` (issue 15): a user checkpoint is checked (it loads and
codes a test image), kept with its hashes, adapts with its training lambda, and the bitstreams made
with it decode only with the same weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codec.zoo import CheckpointSpec, ModelError, Registry, parse_checkpoint
from codec.zoo.user_models import add_model, read_models, register_user_models, remove_model

REPO = Path(__file__).resolve().parents[1]


def _state_dict(path: Path, seed: int = 0) -> Path:
    """A random mbt2018-mean (quality 2) state dict, latents spread like a trained model's."""
    from compressai.zoo import mbt2018_mean

    torch.manual_seed(seed)
    net = mbt2018_mean(quality=2, pretrained=False)
    with torch.no_grad():
        net.g_a[-1].weight.mul_(30.0)
        net.g_s[-1].bias.fill_(0.45)
    torch.save(net.state_dict(), path)
    return path


def test_add_checks_keeps_hashes_and_skips_a_changed_file(tmp_path: Path) -> None:
    file = tmp_path / "models.json"
    ckpt = _state_dict(tmp_path / "m.pth")
    entry = add_model("mine", ckpt, "mbt2018-mean", 0.025, file=file)
    assert read_models(file) == [entry] and len(entry.file_sha256) == 64
    reg = Registry()
    assert register_user_models(reg, file) == []
    assert reg.get("mine").hash.hex() == entry.weights_hash
    assert reg.get("mine").lmbda_at(0.0) == 0.025
    with pytest.raises(ModelError, match="does not fit architecture bmshj2018-hyperprior"):
        add_model("wrong", ckpt, "bmshj2018-hyperprior", file=file)
    with pytest.raises(ModelError, match="built-in"):
        add_model("mbt2018-mean", ckpt, "mbt2018-mean", file=file)
    assert [m.name for m in read_models(file)] == ["mine"]  # nothing kept from the refused ones
    _state_dict(ckpt, seed=1)  # other weights under the same path
    assert register_user_models(Registry(), file) == ["mine"]
    assert remove_model("mine", file) and read_models(file) == []


def _udic(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "codec.cli", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=_env())


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_cli_add_then_adaptive_encode_and_decode_only_with_the_same_weights(tmp_path: Path, kodak_path: Path) -> None:
    from PIL import Image

    with Image.open(kodak_path) as im:
        im.convert("RGB").crop((330, 220, 394, 284)).save(tmp_path / "c.png")
    _state_dict(tmp_path / "m.pth")
    added = _udic(tmp_path, "models", "add", "mine", "m.pth", "--arch", "mbt2018-mean", "--lambda", "0.025")
    assert added.returncode == 0, added.stderr
    assert f"UDIC_CHECKPOINTS=mine={tmp_path / 'm.pth'}@mbt2018-mean@0.025" in added.stdout
    enc = _udic(tmp_path, "encode", "c.png", "-m", "mine", "--adapt", "fast", "--time-budget", "6", "-o", "c.udic")
    assert enc.returncode == 0 and "adaptation: chose" in enc.stdout, enc.stderr
    assert _udic(tmp_path, "decode", "c.udic", "-o", "d.png").returncode == 0
    _state_dict(tmp_path / "m.pth", seed=1)  # the file now holds other weights
    dec = _udic(tmp_path, "decode", "c.udic", "-o", "e.png")
    assert dec.returncode == 3 and "changed since it was added" in dec.stderr
    assert dec.stderr.strip().splitlines()[-1].startswith("udic: error:")


def test_checkpoint_entries_may_carry_the_training_lambda() -> None:
    """``NAME=PATH@ARCH@LAMBDA`` (what ``udic models add`` prints for UDIC_CHECKPOINTS)."""
    assert parse_checkpoint("a=/m/a.pth@mbt2018-mean@0.013") == CheckpointSpec(
        "a", Path("/m/a.pth"), "mbt2018-mean", 0.013
    )
    assert parse_checkpoint("a=/m/a.pth@mbt2018-mean").lmbda is None
    with pytest.raises(ModelError, match="not a number"):
        parse_checkpoint("a=/m/a.pth@mbt2018-mean@high")
