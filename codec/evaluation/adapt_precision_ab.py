"""bf16 against fp32 in the adaptive encode on the CPU: wall time and RD saving, side by side.

The adaptive encode's refinement and adapter stages run the synthesis forward and backward hundreds
of times. Where the CPU runs bf16 natively (``codec.determinism.bf16_is_fast``) they run it under
bf16 autocast in channels_last; the rates stay fp32 and the final coding is canonical fp32, so
only *how good the refined latents and adapters are* can change, never whether the file decodes.
This measures both sides in one process, interleaved per image (fp32 then bf16), after a warm-up,
so the time ratio is fair on a shared machine (CPU seconds are recorded too: on a loaded machine
they, not wall seconds, say what each side costs):

    python -m codec.evaluation.adapt_precision_ab --domains kodak comic screen --images 2 \
        --quality 2.5 --preset fast --out docs/bench/adapt_precision_ab.json

``--image FILE`` adds whole images (a 768x512 Kodak photo, for the issue's 35 s target).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec.adaptation.encoder import adaptive_encode
from codec.datasets import bench_images
from codec.determinism import bf16_is_fast
from codec.evaluation.provenance import STAMP_KEY, weights_stamp
from codec.imageio import CodecImage, load_image
from codec.zoo import ModelError, default_registry, parse_checkpoint, register_checkpoint


def _one(img: CodecImage, model: str, quality: float, preset: str, amp: bool) -> dict[str, Any]:
    t, c = time.perf_counter(), time.process_time()
    r = adaptive_encode(img, model, quality=quality, config=preset, amp=amp)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    return {
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "stage_seconds": {k: round(v, 3) for k, v in r.stage_seconds.items()},
        "rd_saving_pct": round(r.rd_saving_pct, 3),
        "choice": r.choice,
        "bpp": round(r.result.bpp, 5),
        "psnr": round(r.result.psnr, 3),
    }


def measure(images: list[tuple[str, CodecImage]], model: str, quality: float, preset: str) -> list[dict[str, Any]]:
    rows = []
    for name, img in images:
        fp32 = _one(img, model, quality, preset, amp=False)
        bf16 = _one(img, model, quality, preset, amp=True)
        rows.append({"image": name, "pixels": img.width * img.height, "fp32": fp32, "bf16": bf16})
        print(
            f"{name:28s} fp32 {fp32['seconds']:7.2f} s saving {fp32['rd_saving_pct']:6.2f} % | "
            f"bf16 {bf16['seconds']:7.2f} s saving {bf16['rd_saving_pct']:6.2f} % | "
            f"x{fp32['seconds'] / bf16['seconds']:.2f} wall, x{fp32['cpu_seconds'] / bf16['cpu_seconds']:.2f} cpu",
            flush=True,
        )
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [r["fp32"]["seconds"] / r["bf16"]["seconds"] for r in rows]
    cpu_ratios = [r["fp32"]["cpu_seconds"] / r["bf16"]["cpu_seconds"] for r in rows]
    deltas = [r["bf16"]["rd_saving_pct"] - r["fp32"]["rd_saving_pct"] for r in rows]
    return {
        "images": len(rows),
        "speedup_median": round(statistics.median(ratios), 3),
        "speedup_min": round(min(ratios), 3),
        "speedup_max": round(max(ratios), 3),
        "cpu_speedup_median": round(statistics.median(cpu_ratios), 3),
        "saving_fp32_mean_pct": round(float(np.mean([r["fp32"]["rd_saving_pct"] for r in rows])), 3),
        "saving_bf16_mean_pct": round(float(np.mean([r["bf16"]["rd_saving_pct"] for r in rows])), 3),
        "saving_delta_mean_pts": round(float(np.mean(deltas)), 3),
        "saving_delta_max_abs_pts": round(float(np.max(np.abs(deltas))), 3),
    }


def _images(args: argparse.Namespace) -> list[tuple[str, CodecImage]]:
    out = []
    for domain in args.domains:
        for b in bench_images(domain, args.images):
            out.append((f"{domain}/{b.name}", CodecImage(rgb=b.rgb)))
    for path in args.image:
        out.append((path.name, load_image(path)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", nargs="*", default=["kodak", "comic", "screen"])
    ap.add_argument("--images", type=int, default=2, help="bench-256 crops per domain")
    ap.add_argument("--image", type=Path, action="append", default=[], help="whole images to add")
    ap.add_argument("--quality", type=float, default=2.5)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--model", default="default")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH[@ARCH]")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--out", type=Path, default=Path("results/adapt_precision_ab.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for spec in args.checkpoint:
        entry = parse_checkpoint(spec)
        register_checkpoint(entry.name, entry.path, entry.arch)
    try:
        default_registry().get(args.model)
    except ModelError as exc:
        print(f"adapt_precision_ab: error: {exc}", file=sys.stderr)
        return 3
    if not bf16_is_fast(torch.device("cpu")):
        print("adapt_precision_ab: this CPU has no native bf16; both sides would run fp32", file=sys.stderr)
        return 2
    images = _images(args)
    warm = images[0][1]
    adaptive_encode(warm, args.model, quality=args.quality, config=args.preset, latent_iters=10, decoder_iters=5)
    rows = measure(images, args.model, args.quality, args.preset)
    summary = {
        "model": args.model,
        "quality": args.quality,
        "preset": args.preset,
        STAMP_KEY: weights_stamp([args.model]),
        "threads": torch.get_num_threads(),
        **summarise(rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
