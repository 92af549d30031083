"""Training runs from the same weights side by side: which recipe (optimiser, learning rate,
fresh or kept optimiser state) gains most per minute of training.

Each run directory of ``codec.training.train_default`` holds ``eval.csv``: every 1,000 steps the
estimated bits and the PSNR of the Kodak bench crops at each rate level, with the run's training
seconds. This turns every such row into one figure, the BD-rate (estimated bpp against PSNR over the
levels) against the starting weights on the same crops, and tabulates it against training minutes
since the run's schedule began, so runs of different step costs compare at equal time. A
``kodak_compare`` results file adds each run's final Kodak figures (24 full images, real coding).

    python -m codec.evaluation.optimiser_ab --start codec/zoo/weights/default.pt \\
        --run adam=runs/a --run soap=runs/b --kodak a.json b.json --out docs/bench/optimiser_ab.json
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from codec.datasets import bench_images
from codec.evaluation.bd import bd_rate
from codec.training.session import as_batch
from codec.training.train_default import build_model, build_parser, evaluate

#: minutes of training at which the table shows each run (the eval row at or just before)
MARKS = (15, 30, 60, 90)


def curves(eval_csv: Path) -> list[dict[str, Any]]:
    """One entry per evaluated step: its training seconds and the (bpp, PSNR) of every level."""
    rows: dict[int, dict[str, Any]] = defaultdict(lambda: {"bpp": [], "psnr": []})
    with open(eval_csv) as f:
        for r in csv.DictReader(f):
            e = rows[int(r["step"])]
            e["wall_s"] = float(r["wall_s"])
            e["bpp"].append(float(r["bpp_est"]))
            e["psnr"].append(float(r["psnr"]))
    return [{"step": s, **e} for s, e in sorted(rows.items())]


def start_curve(weights: Path) -> dict[str, list[float]]:
    """The starting weights measured as the trainer measures (``evaluate``, fp32, real rounding)."""
    model, _ = build_model(build_parser().parse_args(["--init", str(weights)]), torch.device("cpu"))
    rows = evaluate(model, as_batch([b.rgb for b in bench_images("kodak")]), "fp32")
    return {"bpp": [r[1] for r in rows], "psnr": [r[2] for r in rows]}


def summarise(run: Path, start: dict[str, list[float]]) -> dict[str, Any]:
    """A run's recipe (from its checkpoint) and its crops BD-rate against the start over time."""
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    args, began = state.get("args", {}), state.get("schedule", {})
    points = []
    for e in curves(run / "eval.csv"):
        if e["step"] <= began.get("step", 0):
            continue
        bd = bd_rate(start["bpp"], start["psnr"], e["bpp"], e["psnr"])
        minutes = (e["wall_s"] - began.get("wall", 0.0)) / 60
        points.append({"step": e["step"], "minutes": minutes, "bd_vs_start_pct": bd})
    minutes = (state["wall"] - began.get("wall", 0.0)) / 60
    steps = state["step"] - began.get("step", 0)
    return {
        "optimiser": args.get("optimizer", "adam"),
        "lr": args.get("lr"),
        "init": args.get("init"),
        "start_step": began.get("step", 0),
        "end_step": state["step"],
        "train_minutes": minutes,
        "s_per_step": minutes * 60 / max(1, steps),
        "points": points,
    }


def at_minutes(run: dict[str, Any], minutes: float) -> dict[str, Any] | None:
    """The run's last evaluation at or before ``minutes`` of training; None before its first, and
    None when the run stopped before training that long."""
    before = [p for p in run["points"] if p["minutes"] <= minutes + 0.5]
    return before[-1] if before and run["train_minutes"] >= minutes else None


def _bd(point: dict[str, Any] | None) -> float | None:
    return None if point is None else point["bd_vs_start_pct"]


def _line(label: str, run: dict[str, Any]) -> str:
    marks = [f"{m} min {bd:+.2f} %" if bd is not None else f"{m} min -" for m, bd in run["at_minutes"].items()]
    end = run["points"][-1]["bd_vs_start_pct"] if run["points"] else float("nan")
    kodak = f", Kodak {run['kodak']['bd_rate_vs_vvc_pct']} % vs VVC" if "kodak" in run else ""
    return f"{label}: {run['optimiser']} lr {run['lr']}, crops BD vs start: {', '.join(marks)}, end {end:+.2f} %{kodak}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", type=Path, required=True, help="the exported weights every run started from")
    ap.add_argument("--run", action="append", required=True, help="LABEL=RUN_DIR (repeat)")
    ap.add_argument("--kodak", type=Path, nargs="*", default=[], help="kodak_compare results naming runs by label")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    start = start_curve(args.start)
    kodak = {name: m for f in args.kodak for name, m in json.loads(f.read_text())["models"].items()}
    runs: dict[str, Any] = {}
    for spec in args.run:
        label, _, folder = spec.partition("=")
        if not folder or not (Path(folder) / "last.pt").is_file():
            raise SystemExit(f"optimiser_ab: error: --run {spec}: want LABEL=DIR with DIR/last.pt")
        runs[label] = summarise(Path(folder), start)
        if label in kodak:
            k = kodak[label]
            runs[label]["kodak"] = {"bd_rate_vs_vvc_pct": k["bd_rate_vs_vvc_pct"], "top": k["curve"][-1]}
        runs[label]["at_minutes"] = {str(m): _bd(at_minutes(runs[label], m)) for m in MARKS}
        print(_line(label, runs[label]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"start": str(args.start), "start_crops": start, "marks_minutes": list(MARKS), "runs": runs}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
