"""A trained zoo-architecture checkpoint goes the user's way: ``codec.training.train_zoo`` writes it,
``udic models add`` keeps it, and the adaptation benchmark measures a family of them as one curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from codec.cli import main as udic
from codec.evaluation import adaptation_bench
from codec.training import train_zoo


@pytest.fixture()
def photos(tmp_path: Path, datasets: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted((datasets / "natural-train").iterdir())[:2]:
        with Image.open(p) as im:
            im.convert("RGB").crop((0, 0, 96, 96)).save(folder / f"{p.stem}.png")
    return folder


def test_trained_checkpoints_are_added_and_benchmarked_as_one_curve(
    tmp_path: Path, photos: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # `udic models add` keeps its list in ./var/storage
    names = []
    for lmbda in (0.0035, 0.013):
        out = tmp_path / f"run-{lmbda}"
        args = [
            "--lmbda",
            str(lmbda),
            "--N",
            "16",
            "--M",
            "24",
            "--data",
            str(photos),
            "--steps",
            "3",
            "--seed",
            str(len(names)),
        ]
        assert train_zoo.main([*args, "--batch", "2", "--crop", "64", "--threads", "1", "--out", str(out)]) == 0
        weights = out / f"mbt2018-mean-{lmbda:g}.pth"
        assert "resumed" not in capsys.readouterr().out and weights.is_file()
        names.append(f"mbt-{len(names)}")
        assert udic(["models", "add", names[-1], str(weights), "--arch", "mbt2018-mean", "--lambda", str(lmbda)]) == 0
    assert train_zoo.main([*args, "--out", str(out)]) == 0  # the same command again: resumes, already done
    assert "resumed at step 3" in capsys.readouterr().out

    bench = ["--domains", "kodak", "--images", "1", "--latent-iters", "2", "--decoder-iters", "1"]
    assert adaptation_bench.main([*bench, "--methods", "sga", "--rate-models", *names, "--out", "ab"]) == 0
    summary = json.loads((tmp_path / "ab" / "summary.json").read_text())
    assert set(summary["weights"]) == set(names)
    points = (tmp_path / "ab" / "points.csv").read_text().splitlines()[1:]
    assert {(p.split(",")[2], p.split(",")[3]) for p in points} == {
        ("1.0", "plain"),
        ("1.0", "sga"),
        ("2.0", "plain"),
        ("2.0", "sga"),
    }
    assert summary["kodak"]["sga"]["rd_cost_saving_pct"] is not None


def test_init_starts_from_a_neighbours_weights(tmp_path: Path, photos: Path) -> None:
    """``--init`` loads another lambda's exported weights: with a learning rate of zero the new
    checkpoint's transforms are those weights; a checkpoint of another width is refused."""
    import torch

    base = ["--N", "16", "--M", "24", "--data", str(photos), "--batch", "2", "--crop", "64", "--threads", "1"]
    first = tmp_path / "first"
    assert train_zoo.main([*base, "--lmbda", "0.013", "--steps", "3", "--out", str(first)]) == 0
    src = first / "mbt2018-mean-0.013.pth"
    second = tmp_path / "second"
    assert (
        train_zoo.main(
            [*base, "--lmbda", "0.0035", "--steps", "1", "--lr", "0", "--init", str(src), "--out", str(second)]
        )
        == 0
    )
    a = torch.load(src, weights_only=True)
    b = torch.load(second / "mbt2018-mean-0.0035.pth", weights_only=True)
    transforms = [k for k in a if k.startswith(("g_a.", "g_s.", "h_a.", "h_s."))]
    assert transforms and all(torch.equal(a[k], b[k]) for k in transforms)
    with pytest.raises(SystemExit, match="is not mbt2018-mean N=32 M=24 weights"):
        train_zoo.main(
            [
                *base[:1],
                "32",
                *base[2:],
                "--lmbda",
                "0.0035",
                "--steps",
                "1",
                "--init",
                str(src),
                "--out",
                str(tmp_path / "wide"),
            ]
        )
