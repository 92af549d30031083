"""Kodak, 24 full images: our models against JPEG (Pillow 4:2:0) and the published VVC results.

The figure the base model is judged by (issue 10): BD-rate against VVC (VTM, the per-image results
published with the WACV 2023 paper, ``../shared/datasets/reference/universal-dic``), and the PSNR
at the top quality. Several models in one run (``--model default cand``) are measured side by side
on the same images, so two weights files can be compared without a second, differently loaded run.

Every point is a real file: our bpp counts every byte of the ``.udic`` container, JPEG's every byte
of the ``.jpg``. PSNR is on 8-bit RGB. Curves are the mean bpp and mean PSNR over the images at each
setting; BD by PCHIP (``codec.evaluation.bd``) over the range both curves cover.

    python -m codec.evaluation.kodak_compare                                   # the embedded model
    python -m codec.evaluation.kodak_compare --checkpoint cand=runs/x.pt --model default cand
    python -m codec.evaluation.kodak_compare --limit 4                         # quick look
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from codec.datasets import datasets_root, list_images
from codec.evaluation.bd import bd_psnr, bd_rate, format_bd
from codec.evaluation.provenance import STAMP_KEY, weights_stamp
from codec.imageio import load_image
from codec.metrics import psnr
from codec.pipeline import EncodeRequest, encode
from codec.zoo import ModelError, default_registry, parse_checkpoint, register_checkpoint

JPEG_QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)
VVC_QPS = (24, 27, 30, 33, 36, 39, 42)
Curve = tuple[list[float], list[float]]


def jpeg_point(rgb: np.ndarray, quality: int) -> tuple[int, float]:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)  # Pillow default: 4:2:0
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        dec = np.asarray(im.convert("RGB"))
    return len(data), psnr(rgb, dec)


def published_vvc(root: Path, images: set[str]) -> list[dict[str, Any]]:
    """The published per-image VVC (VTM) points on Kodak, for the given image names."""
    ref = root / "reference" / "universal-dic"
    order = (ref / "natural_order.txt").read_text().split()
    rows = []
    for qp in VVC_QPS:
        with open(ref / f"vvc_q{qp}_natural.csv", newline="") as f:
            for r in csv.DictReader(f):
                name = order[int(r[""])]
                if name in images:
                    rows.append(
                        {"codec": "vvc", "setting": qp, "image": name, "bpp": float(r["bpp"]), "psnr": float(r["psnr"])}
                    )
    return rows


def measure(files: list[Path], models: list[str], qualities: list[float]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(files) * (len(models) * len(qualities) + len(JPEG_QUALITIES)), desc="kodak", unit="enc")
    for path in files:
        img = load_image(path)
        px = img.width * img.height
        for model in models:
            for q in qualities:
                out = encode(img, EncodeRequest(model=model, quality=q))
                n = len(out.data)
                rows.append(
                    {"codec": model, "setting": q, "image": path.name, "bpp": n * 8 / px, "psnr": out.result.psnr}
                )
                bar.update()
        for jq in JPEG_QUALITIES:
            n, p = jpeg_point(img.rgb, jq)
            rows.append({"codec": "jpeg420", "setting": jq, "image": path.name, "bpp": n * 8 / px, "psnr": p})
            bar.update()
    bar.close()
    return rows


def curve(rows: list[dict[str, Any]], codec: str) -> tuple[list[float], Curve]:
    """Settings, and (mean bpp, mean PSNR) per setting, of one codec."""
    settings = sorted({r["setting"] for r in rows if r["codec"] == codec})
    bpps, psnrs = [], []
    for s in settings:
        sel = [r for r in rows if r["codec"] == codec and r["setting"] == s]
        bpps.append(float(np.mean([r["bpp"] for r in sel])))
        psnrs.append(float(np.mean([r["psnr"] for r in sel])))
    return settings, (bpps, psnrs)


def summarise(rows: list[dict[str, Any]], models: list[str], images: int) -> dict[str, Any]:
    """Per model: its curve, BD-rate/BD-PSNR against JPEG 4:2:0 and against the published VVC."""
    anchors = {name: curve(rows, name) for name in ("jpeg420", "vvc")}
    out: dict[str, Any] = {"images": images, "models": {}}
    for name, (settings, (b, p)) in anchors.items():
        out[name] = [{"setting": s, "bpp": x, "psnr": y} for s, x, y in zip(settings, b, p, strict=True)]
    for model in models:
        settings, (ob, op) = curve(rows, model)
        entry: dict[str, Any] = {
            "curve": [{"quality": s, "bpp": x, "psnr": y} for s, x, y in zip(settings, ob, op, strict=True)]
        }
        for name, (_, (ab, ap)) in anchors.items():
            entry[f"bd_rate_vs_{name}_pct"] = format_bd(bd_rate, ab, ap, ob, op)
            entry[f"bd_psnr_vs_{name}_db"] = format_bd(bd_psnr, ab, ap, ob, op)
        out["models"][model] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0, help="first N Kodak images only")
    ap.add_argument("--model", nargs="+", default=["default"], help="models to measure side by side")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH[@ARCH]")
    ap.add_argument("--qualities", type=float, nargs="+", default=[1, 2, 3, 4, 5, 6])
    ap.add_argument("--out", type=Path, default=Path("results/kodak_compare.json"))
    args = ap.parse_args(argv)
    for spec in args.checkpoint:
        entry = parse_checkpoint(spec)
        register_checkpoint(entry.name, entry.path, entry.arch)
    for model in args.model:  # a missing or broken model is one line, before any work
        try:
            default_registry().get(model)
        except ModelError as exc:
            print(f"kodak_compare: error: {exc}", file=sys.stderr)
            return 3  # as the udic CLI: a model that is not available
    root = datasets_root()
    if root is None:
        raise SystemExit("../shared/datasets not found (set UDIC_DATASETS)")
    files = list_images(root / "kodak")[: args.limit or None]
    rows = measure(files, args.model, args.qualities) + published_vvc(root, {p.name for p in files})
    summary = summarise(rows, args.model, len(files))
    summary[STAMP_KEY] = weights_stamp(args.model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["codec", "setting", "image", "bpp", "psnr"])
        w.writeheader()
        w.writerows(rows)
    print(f"Kodak, {len(files)} images (points: {args.out.with_suffix('.csv')})")
    for model, entry in summary["models"].items():
        top = entry["curve"][-1]
        print(
            f"  {model}: BD-rate vs VVC {entry['bd_rate_vs_vvc_pct']} %, vs JPEG {entry['bd_rate_vs_jpeg420_pct']} %; "
            f"top quality {top['quality']:g}: {top['bpp']:.4f} bpp, {top['psnr']:.2f} dB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
