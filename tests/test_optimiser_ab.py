"""The optimiser comparison reads the trainer's own files and compares runs at equal training time."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from codec.evaluation.optimiser_ab import at_minutes, summarise

START = {"bpp": [0.2, 0.4, 0.8], "psnr": [28.0, 31.0, 34.0]}


def _run(folder: Path, rows: list[tuple[int, float, float]], began: tuple[int, float]) -> Path:
    """A run directory as train_default leaves it: eval.csv rows (step, wall_s, bpp scale) and last.pt."""
    folder.mkdir()
    with open(folder / "eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "wall_s", "level", "bpp_est", "psnr"])
        for step, wall, scale in rows:
            for level, (b, p) in enumerate(zip(START["bpp"], START["psnr"], strict=True)):
                w.writerow([step, wall, level, b * scale, p])
    last_step, last_wall, _ = rows[-1]
    state = {"args": {"optimizer": "soap", "lr": 1e-4}, "schedule": {"step": began[0], "wall": began[1]}}
    torch.save({**state, "step": last_step + 10, "wall": last_wall + 30.0}, folder / "last.pt")
    return folder


def test_runs_compare_by_bd_rate_against_the_start_at_equal_training_minutes(tmp_path: Path) -> None:
    # an eval row from before this run's schedule (an earlier session) is not part of the run
    rows = [(1000, 500.0, 0.5), (2000, 1600.0, 1.0), (3000, 2200.0, 0.9), (4000, 4300.0, 0.8)]
    run = summarise(_run(tmp_path / "r", rows, began=(1500, 1000.0)), START)
    assert run["optimiser"] == "soap" and run["lr"] == 1e-4 and run["start_step"] == 1500
    assert [p["step"] for p in run["points"]] == [2000, 3000, 4000]
    assert [round(p["minutes"]) for p in run["points"]] == [10, 20, 55]
    bds = [p["bd_vs_start_pct"] for p in run["points"]]
    assert bds == pytest.approx([0.0, -10.0, -20.0], abs=1e-6)  # bits scaled by 0.9 at equal PSNR: -10 %
    assert run["s_per_step"] == pytest.approx((4330.0 - 1000.0) / (4010 - 1500))
    assert at_minutes(run, 15)["step"] == 2000  # type: ignore[index]
    assert at_minutes(run, 5) is None  # nothing evaluated yet
    assert at_minutes(run, 60) is None  # the run stopped before an hour of training
