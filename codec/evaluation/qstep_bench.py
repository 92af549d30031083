"""What the adaptive quantisation steps (seed 003, ``fast+qstep``) buy: RD against ``fast``, and rate range.

Two parts, written together into ``docs/bench/qstep_summary.json`` and ``.csv``:

1. ``--points``: the adaptation benchmark's points (``codec.evaluation.adaptation_bench`` run with the
   fast settings and ``--methods sga sga+adapters sga+qstep sga+qstep+adapters``; several output
   folders allowed). Per domain: BD-rate of ``sga+qstep+adapters`` against ``sga+adapters`` (the
   fast preset's two stages with and without the steps) and of ``sga+qstep`` against ``sga``, on the
   domain's mean curves (mean bpp and PSNR over its images at each quality), and the mean real
   RD-cost change per point (bpp + lambda*255^2*MSE at the quality's lambda).
2. ``--range-image``: how far the steps move the rate beyond the trained levels on one image: the
   plain encode and ``fast`` at the lowest and highest level, then ``fast`` and ``fast+qstep`` asked
   for lambdas below the lowest / above the highest trained one (the refinement's lambda,
   ``AdaptConfig.lmbda``; the step starts at ``sqrt(lambda_level / lambda)``).

    python -m codec.evaluation.qstep_bench --points results/qstep_bench/a results/qstep_bench/b \\
        --range-image kodak --out docs/bench/qstep_summary
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from codec.adaptation.encoder import adaptive_encode, resolve_config
from codec.coder import encode_report
from codec.datasets import DOMAINS, bench_images
from codec.evaluation.bd import bd_psnr, bd_rate, format_bd
from codec.evaluation.provenance import STAMP_KEY, weights_stamp
from codec.zoo import default_registry

PAIRS = (("sga+adapters", "sga+qstep+adapters"), ("sga", "sga+qstep"))
LAMBDA_FACTORS = (1 / 64, 1 / 16, 1 / 4)  # below the lowest level; their inverses above the highest


def _rows(folders: list[Path]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for folder in folders:
        with open(folder / "points.csv", newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def _complete(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows of the images that have every (quality, method) of the run: a benchmark cut short
    leaves an image half done, which would mix image sets across the mean curve's qualities."""
    need = {(r["quality"], r["method"]) for r in rows}
    have: dict[str, set[tuple[str, str]]] = {}
    for r in rows:
        have.setdefault(r["image"], set()).add((r["quality"], r["method"]))
    return [r for r in rows if have[r["image"]] >= need]


def _curve(rows: list[dict[str, str]], method: str) -> tuple[list[float], list[float]]:
    """Mean (bpp, PSNR) over the images at each quality where the method has every image."""
    bpps, psnrs = [], []
    for q in sorted({float(r["quality"]) for r in rows}):
        at = [r for r in rows if r["method"] == method and float(r["quality"]) == q]
        if at:
            bpps.append(float(np.mean([float(r["bpp"]) for r in at])))
            psnrs.append(float(np.mean([float(r["psnr"]) for r in at])))
    return bpps, psnrs


def _cost(r: dict[str, str], lmbda: float) -> float:
    return float(r["bpp"]) + lmbda * 255.0**2 * 10 ** (-float(r["psnr"]) / 10)


def rd_table(rows: list[dict[str, str]], domains: list[str]) -> dict[str, dict[str, Any]]:
    """Per domain and pair: BD-rate, BD-PSNR, mean real RD-cost change, images, encode seconds."""
    base = default_registry().get("default")
    out: dict[str, dict[str, Any]] = {}
    for domain in domains:
        sel = _complete([r for r in rows if r["domain"] == domain])
        if not sel:
            continue
        by_key = {(r["image"], r["quality"], r["method"]): r for r in sel}
        entry: dict[str, Any] = {"images": len({r["image"] for r in sel})}
        for anchor, test in PAIRS:
            a, t = _curve(sel, anchor), _curve(sel, test)
            changes = [
                100.0 * (_cost(r, lm) / _cost(by_key[(r["image"], r["quality"], anchor)], lm) - 1.0)
                for r in sel
                if r["method"] == test and (r["image"], r["quality"], anchor) in by_key
                for lm in [base.lmbda_at(base.level_for(float(r["quality"])))]
            ]
            secs = {m: [float(r["encode_s"]) for r in sel if r["method"] == m] for m in (anchor, test)}
            entry[f"{test} vs {anchor}"] = {
                "bd_rate_pct": format_bd(bd_rate, *a, *t) if len(a[0]) >= 2 and len(t[0]) >= 2 else "n/a",
                "bd_psnr_db": format_bd(bd_psnr, *a, *t) if len(a[0]) >= 2 and len(t[0]) >= 2 else "n/a",
                "rd_cost_change_pct": round(float(np.mean(changes)), 2) if changes else None,
                "points": len(changes),
                "encode_s": {m: round(float(np.mean(v)), 2) if v else None for m, v in secs.items()},
            }
        out[domain] = entry
    return out


def rate_range(domain: str) -> list[dict[str, Any]]:
    """Rate points on the domain's first bench-256 crop, inside and beyond the trained levels."""
    reg = default_registry()
    base = reg.get("default")
    rgb = bench_images(domain, 1)[0].rgb
    img = Image.fromarray(rgb)
    lo_q, hi_q = base.quality_range
    rows: list[dict[str, Any]] = []

    def add(method: str, quality: float, factor: float, bpp: float, psnr: float, seconds: float) -> None:
        rows.append(
            {
                "method": method,
                "quality": quality,
                "lambda_factor": factor,
                "bpp": round(bpp, 4),
                "psnr": round(psnr, 2),
            }
            | {"seconds": round(seconds, 1)}
        )

    for q in (lo_q, hi_q):
        t = time.perf_counter()
        plain = encode_report(img, quality=q)
        add("plain", q, 1.0, plain.bpp, plain.psnr, time.perf_counter() - t)
        lmbda = base.lmbda_at(base.level_for(q))
        factors = (1.0, *LAMBDA_FACTORS) if q == lo_q else (1.0, *(1 / f for f in LAMBDA_FACTORS))
        for factor in factors:
            for preset in ("fast", "fast+qstep"):
                t = time.perf_counter()
                cfg = resolve_config(preset, lmbda=lmbda * factor)
                res = adaptive_encode(img, quality=q, config=cfg).result
                add(preset, q, factor, res.bpp, res.psnr, time.perf_counter() - t)
    return rows


def write_csv(summary: dict[str, Any], path: Path) -> None:
    """Both parts as one flat table (part, domain, what, figures)."""
    rows: list[dict[str, Any]] = []
    for domain, entry in summary.get("rd", {}).items():
        for pair, v in entry.items():
            if isinstance(v, dict):
                rows.append({"part": "rd", "domain": domain, "what": pair} | {k: v[k] for k in v if k != "encode_s"})
    if "range" in summary:
        rows += [
            {"part": "range", "domain": summary["range"]["image"], "what": r["method"]} | r
            for r in summary["range"]["points"]
        ]
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=Path, nargs="*", default=[], help="adaptation_bench output folders")
    ap.add_argument("--domains", nargs="+", default=list(DOMAINS))
    ap.add_argument("--range-image", default=None, help="domain whose first bench-256 crop the range is measured on")
    ap.add_argument("--out", type=Path, default=Path("docs/bench/qstep_summary"), help="path without extension")
    args = ap.parse_args(argv)
    out_json = args.out.with_suffix(".json")
    summary: dict[str, Any] = json.loads(out_json.read_text()) if out_json.exists() else {}  # parts run apart
    summary[STAMP_KEY] = weights_stamp(["default"])
    if args.points:
        summary["rd"] = rd_table(_rows(args.points), args.domains)
    if args.range_image:
        summary["range"] = {"image": f"{args.range_image} bench-256 crop 1", "points": rate_range(args.range_image)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(summary, indent=2) + "\n")
    write_csv(summary, args.out.with_suffix(".csv"))
    print(json.dumps({k: v for k, v in summary.items() if k != STAMP_KEY}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
