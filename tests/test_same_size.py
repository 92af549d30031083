"""The page's same-size comparison equals ``udic eval`` for the same image and byte size.

``udic eval`` runs on one bench crop; for each of JPEG, WebP and AVIF its row at quality 50 gives a
byte size, and the bisection at that size must land on quality 50 with the same bytes, PSNR and
MS-SSIM (the same encoders, settings and metrics, not a second implementation of them).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from codec.datasets import bench_images
from codec.evaluation.compare import main as eval_main
from codec.evaluation.same_size import SAME_SIZE_CODECS, code_at_size


def test_same_size_equals_udic_eval(datasets: Path, tmp_path: Path) -> None:
    codecs = list(SAME_SIZE_CODECS)
    rc = eval_main(
        [
            "--domains",
            "kodak",
            "--images",
            "1",
            "--codecs",
            *codecs,
            "--qualities",
            "2",
            "4",
            "--zoo",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    with open(tmp_path / "points.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["codec"] in codecs and float(r["setting"]) == 50]
    assert sorted(r["codec"] for r in rows) == sorted(codecs)
    crop = bench_images("kodak", 1)[0]
    assert {r["image"] for r in rows} == {crop.name}
    for row in rows:
        got = code_at_size(row["codec"], crop.rgb, int(row["bytes"]))
        assert got.setting == 50 and got.fits
        assert got.bytes == int(row["bytes"])
        assert math.isclose(got.psnr, float(row["psnr"]), rel_tol=1e-12)
        assert math.isclose(got.ms_ssim, float(row["ms_ssim"]), rel_tol=1e-9)


def test_bisection_finds_the_largest_fitting_quality(kodak_crop: np.ndarray) -> None:
    from codec.evaluation.conventional import CODECS, run_point

    got = code_at_size("jpeg420", kodak_crop, 3000)
    assert got.fits and got.bytes <= 3000
    assert len(run_point(CODECS["jpeg420"], kodak_crop, got.setting + 1)[0]) > 3000
    assert got.encodes <= 9  # a bisection, not a sweep
    with pytest.raises(ValueError, match="unknown codec"):
        code_at_size("gif", kodak_crop, 3000)
    tiny = code_at_size("webp", kodak_crop, 10)
    assert not tiny.fits and tiny.setting == 0 and tiny.bytes > 10
