"""``codec.rate_control``: targets (bytes, bpp, PSNR) instead of a quality, on real coded files.

What matters: the size reported is the file's length; a reachable byte target is never exceeded,
also after adaptation moved the size (re-aim or fall back to the plain file); unreachable targets
return the closest file with a flag; impossible targets are refused before any work.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.adaptation.config import AdaptConfig
from codec.coder import decode_image, load_input, read_header
from codec.imageio import CodecImage
from codec.pipeline import EncodeRequest, encode
from codec.progress import ProgressEvent
from codec.rate_control import (
    ADAPTIVE_SIZE_TOLERANCE,
    InvalidTargetError,
    LevelSearch,
    RateTarget,
    best_file,
    encode_to_target,
)
from codec.zoo import InvalidQualityError, default_registry
from tests.conftest import synthetic_rgb
from tests.test_cli import udic


@pytest.fixture(scope="module")
def picture() -> CodecImage:
    return load_input(Image.fromarray(synthetic_rgb(64, 64, seed=4)))


@pytest.fixture(scope="module")
def search(picture: CodecImage) -> LevelSearch:
    """Plain files of the picture at the lowest, a middle and the highest level."""
    reg = default_registry()
    base, _ = reg.resolve("default")
    s = LevelSearch(base, picture, reg)
    for level in (0.0, 2.5, 5.0):
        s.probe(level)
    return s


def sizes(s: LevelSearch) -> tuple[int, int, int]:
    return len(s.probes[0.0].data), len(s.probes[2.5].data), len(s.probes[5.0].data)


def test_byte_target_reports_the_files_length_and_lands_under_it(picture: CodecImage, search: LevelSearch) -> None:
    small, _, large = sizes(search)
    target = round(math.sqrt(small * large))
    out = encode(picture, EncodeRequest(target=RateTarget("bytes", target)))
    metrics = out.metrics()
    rep = metrics["target"]
    assert isinstance(rep, dict)
    assert metrics["bytes"] == len(out.data) == rep["reached"] == read_header(out.data)["bytes"]
    assert 0.97 * target <= len(out.data) <= target
    assert (rep["status"], rep["met"], rep["kind"]) == ("reached", True, "bytes")
    assert 1 <= rep["probes"] <= 8 and rep["adaptive_runs"] == 0
    assert decode_image(out.data).rgb.shape == picture.rgb.shape  # the ordinary decoder reads it


def test_bpp_and_psnr_targets(picture: CodecImage, search: LevelSearch) -> None:
    _, middle, _ = sizes(search)
    bpp = middle * 8 / (64 * 64) * 0.98
    out = encode(picture, EncodeRequest(target=RateTarget("bpp", bpp)))
    assert out.result.bpp == len(out.data) * 8 / (64 * 64) <= bpp
    lo_psnr, hi_psnr = search.probes[0.0].psnr, search.probes[5.0].psnr
    want = (lo_psnr + hi_psnr) / 2
    out = encode(picture, EncodeRequest(target=RateTarget("psnr", want)))
    assert want <= out.result.psnr <= want + 0.15
    assert out.target is not None and out.target.reached == out.result.psnr


def test_unreachable_targets_give_the_closest_file_with_a_flag(picture: CodecImage, search: LevelSearch) -> None:
    small, _, large = sizes(search)
    out = encode(picture, EncodeRequest(target=RateTarget("bytes", small // 2)))
    assert out.target is not None
    assert (out.target.status, out.target.met, len(out.data)) == ("below-range", False, small)
    out = encode(picture, EncodeRequest(target=RateTarget("bytes", large * 3)))
    assert out.target is not None
    assert (out.target.status, out.target.met, len(out.data)) == ("above-range", True, large)
    out = encode(picture, EncodeRequest(target=RateTarget("psnr", 99.0)))
    assert out.target is not None and (out.target.status, out.target.met) == ("above-range", False)


@pytest.mark.parametrize(
    ("kind", "value"),
    [("bytes", 0), ("bytes", -5), ("bytes", 100.5), ("bpp", float("nan")), ("bpp", float("inf")), ("bpp", 65),
     ("psnr", 5.0), ("psnr", 120.0), ("size", 10)],
)  # fmt: skip
def test_impossible_targets_are_refused(kind: str, value: float) -> None:
    with pytest.raises(InvalidTargetError):
        RateTarget(kind, value)  # type: ignore[arg-type]


def test_target_goes_alone(picture: CodecImage) -> None:
    with pytest.raises(InvalidTargetError, match="one of"):
        RateTarget.from_options(target_bytes=1000, target_psnr=30)
    assert RateTarget.from_options() is None
    with pytest.raises(InvalidQualityError, match="not both"):
        encode(picture, EncodeRequest(quality=3, target=RateTarget("bytes", 1000)))


def test_best_file_prefers_the_window_then_the_limit(search: LevelSearch) -> None:
    files = list(search.probes.values())
    small, middle, large = sizes(search)
    assert len(best_file(RateTarget("bytes", middle), files).data) == middle
    assert len(best_file(RateTarget("bytes", large - 1), files).data) == middle  # none in the window
    assert len(best_file(RateTarget("bytes", small - 1), files).data) == small  # none under: the smallest


@pytest.mark.parametrize("lr", [0.1, 0.2])
def test_adaptive_encode_still_meets_the_byte_target(picture: CodecImage, search: LevelSearch, lr: float) -> None:
    """Adaptation moves the size by several percent here (a large learning rate); whatever it did,
    the file returned respects the target and lands in its window: re-aimed, or the plain file."""
    _, middle, _ = sizes(search)
    target = round(middle * 1.1)
    done: list[ProgressEvent] = []
    cfg = AdaptConfig(latent="sga", latent_iters=20, latent_lr=lr, decoder="none", decoder_iters=0)
    out = encode_to_target(
        search.base,
        picture,
        RateTarget("bytes", target),
        cfg,
        search.registry,
        progress=lambda e: done.append(e) if e.stage == "done" else None,
        device=torch.device("cpu"),
    )
    got = len(out.adaptive.result.data)
    assert (1 - ADAPTIVE_SIZE_TOLERANCE) * target <= got <= target and out.report.met
    first = round(done[0].bpp * 64 * 64 / 8) if done[0].bpp is not None else 0
    if not (1 - ADAPTIVE_SIZE_TOLERANCE) * target <= first <= target:  # the first run missed: re-aimed or fell back
        assert out.report.adaptive_runs == 2 or out.adaptive.choice == "plain"
    assert np.array_equal(decode_image(out.adaptive.result.data, bit_exact=True).rgb, out.adaptive.result.decoded.rgb)


def test_without_reaim_a_miss_falls_back_to_the_plain_file(picture: CodecImage, search: LevelSearch) -> None:
    _, middle, _ = sizes(search)
    target = round(middle * 1.1)
    cfg = AdaptConfig(latent="sga", latent_iters=20, latent_lr=0.2, decoder="none", decoder_iters=0)
    out = encode_to_target(
        search.base, picture, RateTarget("bytes", target), cfg, search.registry, device=torch.device("cpu"), reaim=False
    )
    assert out.report.adaptive_runs == 1 and len(out.adaptive.result.data) <= target


def test_cli_target_bytes_and_refusals(tmp_path: Path, search: LevelSearch) -> None:
    _, middle, _ = sizes(search)
    src, out = tmp_path / "p.png", tmp_path / "p.udic"
    Image.fromarray(synthetic_rgb(64, 64, seed=4)).save(src)
    proc = udic("encode", src, "-o", out, "--target-bytes", str(middle))
    assert proc.returncode == 0, proc.stderr
    assert f"{out.stat().st_size} bytes" in proc.stdout and "target bytes" in proc.stdout and "(reached," in proc.stdout
    assert 0.97 * middle <= out.stat().st_size <= middle
    for bad in (["--target-psnr", "nan"], ["--target-bytes", "0"], ["--target-bpp", "-1"]):
        proc = udic("encode", src, "-o", tmp_path / "x.udic", *bad)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "udic: error:" in proc.stderr, proc.stderr
    with pytest.raises(SystemExit):  # argparse: the target and the quality are mutually exclusive
        udic("encode", src, "--target-bytes", "900", "-q", "3")
