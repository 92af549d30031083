"""The arithmetic the benchmark tables rest on (the benchmarks themselves are scripts, not tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codec.evaluation.adaptation_bench import merge, rd_saving_pct

HEAD = "domain,image,quality,method,bpp,psnr,encode_s,decode_s\n"


def test_rd_saving_counts_bits_and_distortion_at_one_lambda() -> None:
    plain = {"bpp": "1.0", "psnr": "30.0"}
    assert rd_saving_pct(plain, {"bpp": "0.5", "psnr": "30.0"}, 0.0) == pytest.approx(50.0)
    # lambda*255^2*MSE at 30 dB is lambda*65025*1e-3; with lambda = 1/65.025 that is 1.0
    lam = 1 / 65.025
    assert rd_saving_pct(plain, {"bpp": "1.0", "psnr": "40.0"}, lam) == pytest.approx(100 * (2.0 - 1.1) / 2.0)
    assert rd_saving_pct(plain, {"bpp": "1.2", "psnr": "30.0"}, lam) < 0  # worse: a negative saving


def test_merge_combines_parallel_runs_into_one_table(tmp_path: Path) -> None:
    rows = {
        "a": [("line", "x.png", q, m, b, p) for q, m, b, p in ((1, "plain", 0.3, 25), (4, "plain", 0.6, 30))]
        + [("line", "x.png", q, "blr", b, p) for q, b, p in ((1, 0.3, 27), (4, 0.6, 32))],
        "b": [("kodak", "k.png", q, m, b, p) for q, m, b, p in ((1, "plain", 0.3, 28), (4, "plain", 0.7, 31))]
        + [("kodak", "k.png", q, "blr", b, p) for q, b, p in ((1, 0.3, 28.5), (4, 0.7, 31.5))],
    }
    for name, rs in rows.items():
        d = tmp_path / name
        d.mkdir()
        (d / "points.csv").write_text(HEAD + "".join(",".join(map(str, r)) + ",1.0,0.05\n" for r in rs))
        (d / "curves.csv").write_text("domain,image,quality,variant,iteration,elapsed_s,hard_rd_loss\n")
    out = tmp_path / "merged"
    assert merge([tmp_path / "a", tmp_path / "b"], out, ["kodak", "line"], "default") == 0
    lines = (out / "points.csv").read_text().splitlines()
    assert lines[0] == HEAD.strip() and len(lines) == 1 + 8  # one header, every row once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["line"]["blr"]["bd_psnr_vs_plain_db"] == "+2.0"
    assert summary["kodak"]["blr"]["rd_cost_saving_pct"] > 0


def test_kodak_full_keeps_one_point_per_quality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of our rows carries its own quality: once every row said 6 (a loop variable of the
    published-results loop), all qualities collapsed into one point and the BD-rate vanished."""
    from codec.evaluation import compare

    kodak = sorted((compare.datasets_root() / "kodak").iterdir())[:2]  # type: ignore[operator]
    monkeypatch.setattr(compare, "list_images", lambda folder: kodak)

    def fake_points(name: str, qualities: list[float], adapt: str) -> tuple[str, list[float], Any]:
        def run(rgb: np.ndarray, q: float) -> tuple[bytes, np.ndarray, float, float]:
            noisy = np.clip(rgb.astype(np.int16) + int(8 - q), 0, 255).astype(np.uint8)  # better at higher q
            return b"x" * int(2000 * q), noisy, 0.0, 0.0

        return "udic", qualities, run

    monkeypatch.setattr(compare, "our_points", fake_points)
    (tmp_path / "plots").mkdir()
    out = compare.kodak_full(tmp_path, [1, 2, 3, 4, 5, 6], "default")
    bpps, psnrs = out["curves"]["udic"]  # type: ignore[index]
    assert len(bpps) == 6 and bpps == sorted(bpps) and psnrs == sorted(psnrs)
