"""The previous and today's ``fast`` side by side on one image, in one process (issue 12: ``fast`` on a
768x512 image in 35 s or less on 2 cores).

Today's ``fast`` refines the latents for 100 steps at lr 2e-2, trains its adapter through the
output layer's low-rank image (``codec.adaptation.stages._adapted_tail``) and runs the output layer
as a sub-pixel convolution while it optimises (``codec.subpixel``); the previous one ran 250 steps
at lr 5e-3, the adapter through the output layer itself, and that layer as a transposed
convolution. ``--against transposed`` compares today's with and without the sub-pixel layer. The two run alternately,
``--repeats`` times each, after a warm-up encode (first-call costs), so a noisy machine slows both
alike; each run's wall and CPU seconds, real RD-cost saving against the plain encode and kept
candidate are printed and written to ``--out``.

    python -m codec.evaluation.preset_ab ../shared/datasets/kodak/kodim23.png --quality 3 --threads 2 \\
        --out docs/bench/fast_preset_ab.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from codec.adaptation.config import PRESETS, AdaptConfig
from codec.adaptation.encoder import adaptive_encode
from codec.evaluation.provenance import STAMP_KEY, weights_stamp
from codec.imageio import load_image

#: ``fast`` until session 9: what issue 12's 68 s (N=48, before bf16) and 83.6 s (N=96) were measured with
PREVIOUS_FAST = replace(PRESETS["fast"], latent_iters=250, latent_lr=5e-3, push_adapters=False, subpixel=False)
#: today's ``fast`` with the synthesis' last layer as a transposed convolution in the optimisation too
#: (``--against transposed``: what the sub-pixel layer of ``codec.subpixel`` saves)
TRANSPOSED_FAST = replace(PRESETS["fast"], subpixel=False)
AGAINST = {"previous": ("previous fast", PREVIOUS_FAST), "transposed": ("fast, transposed last layer", TRANSPOSED_FAST)}


def _run(img: object, quality: float, cfg: AdaptConfig) -> dict[str, object]:
    cpu, wall = time.process_time(), time.perf_counter()
    r = adaptive_encode(img, quality=quality, config=cfg)  # type: ignore[arg-type]
    return {
        "wall_s": round(time.perf_counter() - wall, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "saving_pct": round(r.rd_saving_pct, 3),
        "choice": r.choice,
        "bpp": round(r.result.bpp, 5),
        "psnr": round(r.result.psnr, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", type=Path)
    ap.add_argument("--quality", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--against", choices=sorted(AGAINST), default="previous", help="the other side")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    img = load_image(args.image)
    adaptive_encode(img, quality=args.quality, config="fast", latent_iters=5, decoder_iters=5)  # warm-up
    other, other_cfg = AGAINST[args.against]
    configs = {other: other_cfg, "fast": PRESETS["fast"]}
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, cfg in configs.items():
            runs[name].append(_run(img, args.quality, cfg))
            print(f"{name:14s} {runs[name][-1]}", flush=True)
    wall = {name: statistics.median(float(r["wall_s"]) for r in rs) for name, rs in runs.items()}  # type: ignore[arg-type]
    print(f"median wall: {other} {wall[other]:.1f} s, fast {wall['fast']:.1f} s, {wall[other] / wall['fast']:.2f}x")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "image": args.image.name,
            "quality": args.quality,
            "threads": args.threads,
            "configs": {name: asdict(cfg) for name, cfg in configs.items()},
            "runs": runs,
            "median_wall_s": wall,
            STAMP_KEY: weights_stamp(["default"]),
        }
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
