"""What a region of interest buys: PSNR inside and outside the region, against the same encode
without the region, at the same file size.

Both encodes use the same adaptation preset and the same ``target_bytes`` (the size of the plain
encode at quality 3.5), so the comparison is at equal bytes (each lands within 95-100 % of the
target). Cases: screenshots, comics and line art with ``roi=auto``; photos with faces (Kodak 04 and
15 at half size) with a rectangle of weight 4 on the face. For ``auto`` the region is where the
auto weight is at least 2.5 (half the edge-density saturation); for a rectangle, the rectangle.

    python -m codec.evaluation.roi_bench --preset fast --pictures docs/roi

writes ``docs/bench/roi_bench.json``, prints a Markdown table, and saves the original, both
decodes and the weight map of the first case run (``--only NAME`` runs one case) under ``--pictures``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from codec.coder import encode_resolved, load_input
from codec.datasets import bench_crop, datasets_root
from codec.imageio import CodecImage
from codec.pipeline import EncodeOutcome, EncodeRequest, encode
from codec.rate_control import RateTarget
from codec.roi import Rect, RoiSpec
from codec.zoo import Registry, default_registry

# (name, set, file, crop or half-size, roi): crops by the bench-256 rule
CASES: list[tuple[str, str, str, str, RoiSpec]] = [
    ("screen-dialog", "screen", "dialogs_image-mode-indexed.png", "crop", RoiSpec("auto")),
    ("screen-palette", "screen", "dialogs_palette-import-dialog.png", "crop", RoiSpec("auto")),
    ("comic-arms", "comic", "ARMS.png", "crop", RoiSpec("auto")),
    ("line-punk", "line", "oc_angry_punk_dirk_struve_.png", "crop", RoiSpec("auto")),
    ("kodim04-face", "kodak", "kodim04.png", "half", RoiSpec("rects", rects=(Rect(76, 90, 124, 180, 4.0),))),
    ("kodim15-face", "kodak", "kodim15.png", "half", RoiSpec("rects", rects=(Rect(190, 30, 160, 190, 4.0),))),
]


def load_case(kind: str, folder: str, name: str) -> CodecImage:
    root = datasets_root()
    assert root is not None
    path = root / folder / name
    if kind == "crop":
        return load_input(Image.fromarray(bench_crop(folder, path).rgb))
    with Image.open(path) as im:
        return load_input(im.convert("RGB").resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS))


def region_mask(spec: RoiSpec, img: CodecImage) -> np.ndarray:
    """Pixels that count as inside: the rectangles, or auto weight >= 2.5 (before normalising)."""
    if spec.kind == "rects":
        inside = np.zeros((img.height, img.width), dtype=bool)
        for r in spec.rects:
            inside[r.y : r.y + r.h, r.x : r.x + r.w] = True
        return inside
    from codec.roi import auto_weights

    return auto_weights(img.rgb) >= 2.5


def psnr_where(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    err = (a.astype(np.float64) - b.astype(np.float64))[mask] ** 2
    return float(10 * np.log10(255.0**2 / max(float(err.mean()), 1e-12)))


def run_case(case: tuple[str, str, str, str, RoiSpec], preset: str, reg: Registry) -> tuple[dict[str, Any], Any]:
    name, folder, file, kind, spec = case
    img = load_case(kind, folder, file)
    base, _ = reg.resolve("default")
    target = len(encode_resolved(base, img, 2.5, reg).data)
    inside = region_mask(spec, img)
    row: dict[str, Any] = {"case": name, "size": f"{img.width}x{img.height}", "roi": spec.kind, "target": target}
    row["inside_pct"] = round(100.0 * float(inside.mean()), 1)
    outs: dict[str, EncodeOutcome] = {}
    for label, roi in (("without", None), ("with", spec)):
        t0 = time.monotonic()
        out = encode(img, EncodeRequest(adaptation=preset, target=RateTarget("bytes", target), roi=roi), registry=reg)
        outs[label] = out
        dec = out.result.decoded.rgb
        row[label] = {
            "bytes": len(out.data),
            "psnr": round(out.result.psnr, 3),
            "psnr_inside": round(psnr_where(dec, img.rgb, inside), 3),
            "psnr_outside": round(psnr_where(dec, img.rgb, ~inside), 3),
            "choice": out.choice,
            "seconds": round(time.monotonic() - t0, 1),
        }
    row["delta_inside_db"] = round(row["with"]["psnr_inside"] - row["without"]["psnr_inside"], 3)
    row["delta_outside_db"] = round(row["with"]["psnr_outside"] - row["without"]["psnr_outside"], 3)
    return row, (img, outs, spec)


def save_pictures(folder: Path, img: CodecImage, outs: dict[str, EncodeOutcome], spec: RoiSpec) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img.rgb).save(folder / "original.png")
    Image.fromarray(outs["without"].result.decoded.rgb).save(folder / "without_roi.png")
    Image.fromarray(outs["with"].result.decoded.rgb).save(folder / "with_roi.png")
    w = spec.weights(img)
    Image.fromarray((np.clip(w / w.max(), 0, 1) * 255).astype(np.uint8)).save(folder / "weights.png")


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | ROI | bytes without / with | inside dB without -> with | outside dB without -> with |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        a, b = r["without"], r["with"]
        lines.append(
            f"| {r['case']} ({r['size']}, {r['inside_pct']} % inside) | {r['roi']} | {a['bytes']} / {b['bytes']} "
            f"| {a['psnr_inside']:.2f} -> {b['psnr_inside']:.2f} ({r['delta_inside_db']:+.2f}) "
            f"| {a['psnr_outside']:.2f} -> {b['psnr_outside']:.2f} ({r['delta_outside_db']:+.2f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--cases", type=int, default=len(CASES))
    ap.add_argument("--only", help="run only the case of this name (its pictures are saved)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pictures", type=Path, default=Path("docs/roi"))
    ap.add_argument("--out", type=Path, default=Path("docs/bench/roi_bench.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    reg = default_registry()
    rows: list[dict[str, Any]] = []
    cases = [c for c in CASES if c[0] == args.only] if args.only else CASES[: args.cases]
    for i, case in enumerate(cases):
        row, (img, outs, spec) = run_case(case, args.preset, reg)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if i == 0:
            save_pictures(args.pictures, img, outs, spec)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        which = f"--only {args.only}" if args.only else f"--cases {args.cases}"
        cmd = f"python -m codec.evaluation.roi_bench --preset {args.preset} {which}"
        args.out.write_text(json.dumps({"command": cmd, "threads": args.threads, "rows": rows}, indent=1) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
