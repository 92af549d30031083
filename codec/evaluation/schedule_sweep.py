"""Latent-refinement saving against steps and learning rate, on training images (issue 12: a ``fast``
that fits 35 s on a 768x512 image without giving up its saving).

The schedule is tuned here, never on an evaluation file: crops use the bench-256 rule (the most
detailed 256x256 window) on 4 photos of ``natural-train-extra`` (files 0, 40, 80, 120 by name) and
2 graphics-train images (comic 5, screen 7), at quality 1, 3 and 5; ``--full`` codes whole training
photos (up to 768 px) at quality 3, where a high rate behaves differently (smooth regions). Latents
only (no adapters), one thread; each row is the real RD-cost saving of the refined latents against
the plain encode (the latents file may lose to the plain one: the saving can be negative).

    python -m codec.evaluation.schedule_sweep --out docs/bench/fast_schedule_sweep_crops.json 250:5e-3 100:2e-2
    python -m codec.evaluation.schedule_sweep --full natural-train-extra/urban100_img_068.jpg \\
        --out docs/bench/fast_schedule_sweep_full.json 250:5e-3 100:2e-2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from codec.adaptation.encoder import adaptive_encode
from codec.datasets import bench_crop, datasets_root, list_images
from codec.imageio import CodecImage, load_image


def _images(root: Path, full: list[str]) -> list[tuple[str, CodecImage, list[float]]]:
    """(name, image, qualities) of the sweep."""
    if full:
        return [(name, load_image(root / name), [3.0]) for name in full]
    files = [list_images(root / "natural-train-extra")[i] for i in (0, 40, 80, 120)]
    files += [list_images(root / "graphics-train/comic")[5], list_images(root / "graphics-train/screen")[7]]
    return [(p.name, CodecImage(bench_crop("train", p).rgb), [1.0, 3.0, 5.0]) for p in files]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("schedules", nargs="+", help="STEPS:LR, e.g. 100:2e-2")
    ap.add_argument("--full", nargs="*", default=[], help="whole training images (paths under the datasets)")
    ap.add_argument("--out", type=Path, required=True, help="JSON rows; rows already there are kept")
    args = ap.parse_args(argv)
    root = datasets_root()
    if root is None:
        raise SystemExit("the shared datasets are not here (see codec.datasets)")
    torch.set_num_threads(1)
    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    images = _images(root, args.full)
    for spec in args.schedules:
        steps, lr = int(spec.split(":")[0]), float(spec.split(":")[1])
        for name, img, qualities in images:
            for q in qualities:
                t = time.time()
                r = adaptive_encode(img, quality=q, config="fast", latent_iters=steps, latent_lr=lr, decoder="none")
                saving = 100 * (1 - r.costs["latents"] / r.costs["plain"])
                rows.append({"iters": steps, "lr": lr, "image": name, "q": q, "saving": saving, "s": time.time() - t})
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(rows, indent=1) + "\n")
        mine = [row["saving"] for row in rows if row["iters"] == steps and row["lr"] == lr]
        print(f"{steps} steps at lr {lr:g}: mean saving {sum(mine) / len(mine):.2f} % over {len(mine)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
