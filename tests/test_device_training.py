"""Training on the GPU device machine, checked on CPU: the pack, checkpoint parts, resume, the device script.

The device itself (CUDA, bf16, the wheel install, the encode timing) is not reachable from CI; what
can break the round trip there (a pack that does not load, a checkpoint that does not rebuild, a
resume at the wrong step, more files than come back) is exercised here with tiny models.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.training import chunks, train_default
from codec.training.pack import build_pack, extract_extras, load_pack

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--crop", "64", "--N", "8", "--M", "16", "--batch", "2", "--warmup", "2", "--threads", "1"]
TINY += ["--precision", "fp32"]


def _images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture()
def no_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A datasets folder without Kodak: the pack and the training find no bench crops."""
    empty = tmp_path / "no-datasets"
    empty.mkdir()
    monkeypatch.setenv("UDIC_DATASETS", str(empty))
    return empty


def _tiny_pack(tmp_path: Path, name: str = "pack.zip", max_mib: float = 0.1) -> Path:
    photos = _images(tmp_path / "photos", [(72, 80), (64, 64), (96, 70), (40, 90)])
    build_pack(tmp_path / name, [photos], max_mib, size=64, seed=3, extras=[], with_eval=False)
    return tmp_path / name


def test_the_pack_is_seeded_lossless_and_a_smaller_budget_is_a_prefix(tmp_path: Path, no_datasets: Path) -> None:
    photos = _images(tmp_path / "photos", [(72, 80), (64, 64), (96, 70), (40, 90)])
    a = build_pack(tmp_path / "a.zip", [photos], 0.1, size=64, seed=3, extras=[], with_eval=False)
    b = build_pack(tmp_path / "b.zip", [photos], 0.1, size=64, seed=3, extras=[], with_eval=False)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    # the 40-pixel image is too small for 64 crops; the three others give one crop each per round
    assert len(a["crops"]) > 3 and {c["source"] for c in a["crops"]} == {"photos/img0.png", "photos/img1.png"} | {
        "photos/img2.png"
    }
    assert (tmp_path / "a.zip").stat().st_size <= 0.1 * 2**20
    small = build_pack(tmp_path / "s.zip", [photos], 0.03, size=64, seed=3, extras=[], with_eval=False)
    assert 0 < len(small["crops"]) < len(a["crops"]) and small["crops"] == a["crops"][: len(small["crops"])]
    pack = load_pack(tmp_path / "a.zip")
    assert len(pack.crops) == len(b["crops"]) and not pack.eval_crops
    for crop, info in zip(pack.crops, a["crops"], strict=True):
        src = np.asarray(Image.open(tmp_path / info["source"]).convert("RGB"))
        expected = src[info["y"] : info["y"] + 64, info["x"] : info["x"] + 64]
        assert crop.dtype == torch.uint8 and crop.shape == (3, 64, 64)
        assert np.array_equal(crop.permute(1, 2, 0).numpy(), expected)  # lossless


def test_originals_keep_jpeg_sources_whole_and_byte_for_byte(tmp_path: Path, no_datasets: Path) -> None:
    photos = _images(tmp_path / "photos", [(72, 80)])
    Image.fromarray(np.full((70, 90, 3), 120, np.uint8)).save(photos / "photo.jpg", quality=92)
    m = build_pack(tmp_path / "o.zip", [photos], 0.1, size=64, extras=[], with_eval=False, originals=True)
    whole = [c for c in m["crops"] if c["source"] == "photos/photo.jpg"]
    assert len(whole) == 1 and (whole[0]["w"], whole[0]["h"]) == (90, 70)  # once, uncropped
    with zipfile.ZipFile(tmp_path / "o.zip") as zf:
        assert zf.read(whole[0]["file"]) == (photos / "photo.jpg").read_bytes()
    shapes = {tuple(c.shape) for c in load_pack(tmp_path / "o.zip").crops}
    assert shapes == {(3, 64, 64), (3, 70, 90)}


def test_the_pack_carries_the_kodak_bench_crops_and_whole_extras(tmp_path: Path, monkeypatch) -> None:
    datasets = tmp_path / "datasets"
    _images(datasets / "kodak", [(64, 64), (48, 64)], seed=1)
    monkeypatch.setenv("UDIC_DATASETS", str(datasets))
    photos = _images(tmp_path / "photos", [(72, 80)])
    m = build_pack(tmp_path / "p.zip", [photos], 0.1, size=64, seed=0, extras=["img1"])
    assert [e["source"] for e in m["eval"]] == ["kodak/img0.png", "kodak/img1.png"]
    pack = load_pack(tmp_path / "p.zip")
    assert [c.shape for c in pack.eval_crops["kodak"]] == [(64, 64, 3), (48, 64, 3)]
    (extra,) = extract_extras(tmp_path / "p.zip", tmp_path / "x")
    assert extra.read_bytes() == (datasets / "kodak" / "img1.png").read_bytes()


def test_chunks_round_trip_and_refuse_a_damaged_or_missing_part(tmp_path: Path) -> None:
    src = tmp_path / "last.pt"
    src.write_bytes(os.urandom(2500))
    manifest = chunks.split(src, tmp_path / "parts", part_bytes=1000)
    parts = sorted((tmp_path / "parts").glob("last.pt.part*"))
    assert [p.stat().st_size for p in parts] == [1000, 1000, 500]
    assert chunks.join(manifest, tmp_path / "back.pt").read_bytes() == src.read_bytes()
    chunks.verify(manifest)
    data = bytearray(parts[1].read_bytes())
    data[10] ^= 1
    parts[1].write_bytes(bytes(data))
    with pytest.raises(chunks.ChunkError, match="part001"):
        chunks.join(manifest, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()
    parts[2].unlink()
    with pytest.raises(chunks.ChunkError):
        chunks.verify(manifest)
    # a new split of a smaller file leaves no stale part behind
    src.write_bytes(b"x" * 1500)
    manifest = chunks.split(src, tmp_path / "parts", part_bytes=1000)
    assert len(list((tmp_path / "parts").glob("last.pt.part*"))) == 2
    assert chunks.join(manifest, tmp_path / "again.pt").read_bytes() == b"x" * 1500


def test_a_run_from_a_pack_resumes_from_joined_parts(tmp_path: Path, no_datasets: Path, capsys) -> None:
    pack = _tiny_pack(tmp_path)
    common = ["--pack", str(pack), *TINY, "--ckpt-every", "5", "--eval-every", "2"]
    train_default.main([*common, "--out", str(tmp_path / "a"), "--steps", "6"])
    assert "evaluation skipped" in capsys.readouterr().out
    manifest = chunks.split(tmp_path / "a" / "last.pt", tmp_path / "parts", part_bytes=100_000)
    assert len(list((tmp_path / "parts").glob("*.part*"))) > 1
    chunks.join(manifest, tmp_path / "b" / "last.pt")
    train_default.main([*common, "--out", str(tmp_path / "b"), "--steps", "10"])
    assert "at step 6" in capsys.readouterr().out
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert state["step"] == 10 and state["args"]["pack"] == str(pack)


def test_the_device_script_resumes_and_returns_parts_weights_and_logs(tmp_path: Path, no_datasets: Path) -> None:
    carry = tmp_path / "carry"
    _tiny_pack(carry)
    first = tmp_path / "first"
    train_default.main(["--pack", str(carry / "pack.zip"), *TINY, "--out", str(first), "--steps", "3"])
    chunks.split(first / "last.pt", carry / "ckpt")
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "UDIC_CARRY": str(carry),
        "UDIC_PYTHON": sys.executable,
        "UDIC_RUN_DIR": str(tmp_path / "run"),
        "UDIC_TRAIN_MINUTES": "0.01",
        "UDIC_SKIP_INSTALL": "1",
        "UDIC_PART_MIB": "0.1",
    }
    cmd = ["bash", str(ROOT / "scripts" / "device_train.sh"), "--", *TINY]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8 and all((out / f).stat().st_size <= 16 << 20 for f in files)
    assert {"ckpt/last.pt.manifest.json", "weights.pt", "logs.tar.gz"} <= set(files)
    assert sum(f.startswith("ckpt/last.pt.part") for f in files) > 1
    back = chunks.join(out / "ckpt" / "last.pt.manifest.json", tmp_path / "back.pt")
    assert torch.load(back, weights_only=False)["step"] > 3
    with tarfile.open(out / "logs.tar.gz") as tf:
        log = tf.extractfile("train.log").read().decode()
    assert "at step 3" in log and "evaluation skipped" in log
