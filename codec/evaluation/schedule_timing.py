"""Encode time of adaptation presets on one image, in one warm process (issue: adaptive encode).

The benchmark runs time encodes next to other work; this one runs the presets one after the other
on an otherwise idle machine, after a short warm-up encode (first-call costs), and prints each
preset's wall time, its real RD-cost saving against the plain encode and the time ratios.

    python -m codec.evaluation.schedule_timing /tmp/line_crop.png --quality 2.5 --presets fast paper
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from codec.adaptation.encoder import adaptive_encode
from codec.imageio import load_image


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", type=Path)
    ap.add_argument("--quality", type=float, default=2.5)
    ap.add_argument("--presets", nargs="+", default=["fast", "paper"])
    ap.add_argument("--model", default="default")
    args = ap.parse_args(argv)
    img = load_image(args.image)
    adaptive_encode(img, args.model, quality=args.quality, config="fast", latent_iters=20, decoder_iters=10)
    seconds: dict[str, float] = {}
    for preset in args.presets:
        t = time.perf_counter()
        r = adaptive_encode(img, args.model, quality=args.quality, config=preset)
        seconds[preset] = time.perf_counter() - t
        saving = 100 * (1 - r.costs[r.choice] / r.costs["plain"])
        print(f"{preset:10s} {seconds[preset]:8.2f} s   RD-cost saving {saving:5.1f} %   kept {r.choice}")
    last = args.presets[-1]
    for preset in args.presets[:-1]:
        print(f"time {preset} / {last}: {seconds[preset] / seconds[last]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
