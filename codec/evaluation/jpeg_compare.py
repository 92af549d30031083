"""Kodak: the embedded default model against JPEG (Pillow, 4:2:0 default), with BD-rate.

Every point is a real file: our bpp counts every byte of the ``.udic`` container, JPEG's every
byte of the ``.jpg``. PSNR is on 8-bit RGB. Curves are the mean bpp and mean PSNR over the images
at each setting, BD-rate by PCHIP (codec.evaluation.bd).

    python -m codec.evaluation.jpeg_compare            # all 24 Kodak images
    python -m codec.evaluation.jpeg_compare --limit 4  # quick look
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from codec.coder import encode_report
from codec.datasets import datasets_root, list_images
from codec.evaluation.bd import bd_psnr, bd_rate, format_bd
from codec.imageio import load_image
from codec.metrics import psnr

JPEG_QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)


def jpeg_point(rgb: np.ndarray, quality: int) -> tuple[int, float]:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)  # Pillow default: 4:2:0
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        dec = np.asarray(im.convert("RGB"))
    return len(data), psnr(rgb, dec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0, help="first N Kodak images only")
    ap.add_argument("--model", default="default")
    ap.add_argument("--qualities", type=float, nargs="+", default=[1, 2, 3, 4, 5, 6])
    ap.add_argument("--csv", type=Path, default=Path("results/kodak_vs_jpeg.csv"))
    args = ap.parse_args(argv)
    root = datasets_root()
    if root is None:
        raise SystemExit("../shared/datasets not found")
    files = list_images(root / "kodak")
    if args.limit:
        files = files[: args.limit]
    rows: list[dict[str, Any]] = []
    work = len(files) * (len(args.qualities) + len(JPEG_QUALITIES))
    bar = tqdm(total=work, desc="kodak", unit="enc")
    for path in files:
        img = load_image(path)
        px = img.width * img.height
        for q in args.qualities:
            t = time.time()
            r = encode_report(img, model=args.model, quality=q)
            rows.append(
                {
                    "codec": args.model,
                    "setting": q,
                    "image": path.name,
                    "bytes": len(r.data),
                    "bpp": len(r.data) * 8 / px,
                    "psnr": r.psnr,
                    "seconds": time.time() - t,
                }
            )
            bar.update()
        for q in JPEG_QUALITIES:
            n, p = jpeg_point(img.rgb, q)
            rows.append(
                {
                    "codec": "jpeg420",
                    "setting": q,
                    "image": path.name,
                    "bytes": n,
                    "bpp": n * 8 / px,
                    "psnr": p,
                    "seconds": 0.0,
                }
            )
            bar.update()
    bar.close()
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    def curve(codec: str, settings: Sequence[float]) -> tuple[list[float], list[float]]:
        bpps, psnrs = [], []
        for s in settings:
            sel = [r for r in rows if r["codec"] == codec and r["setting"] == s]
            bpps.append(float(np.mean([r["bpp"] for r in sel])))
            psnrs.append(float(np.mean([r["psnr"] for r in sel])))
        return bpps, psnrs

    ob, op = curve(args.model, list(args.qualities))
    jb, jp = curve("jpeg420", list(JPEG_QUALITIES))
    print(f"\nKodak, {len(files)} images, mean over images (csv: {args.csv})")
    print(f"{'codec':10s} {'setting':>8s} {'bpp':>8s} {'PSNR dB':>8s}")
    for q, b, p in zip(args.qualities, ob, op, strict=True):
        print(f"{args.model:10s} {q:8g} {b:8.4f} {p:8.2f}")
    for q, b, p in zip(JPEG_QUALITIES, jb, jp, strict=True):
        print(f"{'jpeg420':10s} {q:8d} {b:8.4f} {p:8.2f}")
    bdr, bdp = format_bd(bd_rate, jb, jp, ob, op), format_bd(bd_psnr, jb, jp, ob, op)
    print(f"\nBD-rate of {args.model} vs JPEG 4:2:0: {bdr} %")
    print(f"BD-PSNR of {args.model} vs JPEG 4:2:0: {bdp} dB")
    summary = {
        "images": len(files),
        "model": args.model,
        "ours": [{"quality": q, "bpp": b, "psnr": p} for q, b, p in zip(args.qualities, ob, op, strict=True)],
        "jpeg420": [{"quality": q, "bpp": b, "psnr": p} for q, b, p in zip(JPEG_QUALITIES, jb, jp, strict=True)],
        "bd_rate_vs_jpeg420_pct": bdr,
        "bd_psnr_vs_jpeg420_db": bdp,
    }
    args.csv.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
