"""Write codec/zoo/weights/MODEL_CARD.md from the shipped weights and the measured Kodak results.

python -m codec.evaluation.jpeg_compare                      # measures: results/kodak_vs_jpeg.{csv,json}
python -m codec.training.model_card                          # writes the card from those files
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from codec.zoo.registry import WEIGHTS_DIR, default_registry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=WEIGHTS_DIR / "default.pt")
    ap.add_argument("--results", type=Path, default=Path("results/kodak_vs_jpeg.json"))
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR / "MODEL_CARD.md")
    ap.add_argument("--note", default="", help="free text for the card (how this run went)")
    args = ap.parse_args(argv)
    shipped = torch.load(args.weights, map_location="cpu", weights_only=True)
    cfg = shipped["config"]
    res = json.loads(args.results.read_text())
    model = default_registry().get("default")
    n_params = sum(p.numel() for p in model.net.parameters())
    hours = float(shipped.get("train_seconds") or 0) / 3600
    lines = [
        "# Embedded default model: `default`",
        "",
        "A variable-rate mean-scale hyperprior (Minnen et al. 2018) with per-level gain vectors",
        "(Cui et al. 2021): one network for every rate, quality 1-6 and anything in between.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `codec/models/gained.py`, N={cfg['N']}, M={cfg['M']}, {n_params:,} parameters |",
        f"| file | `default.pt`, {args.weights.stat().st_size / 1e6:.2f} MB: fp16 weights + probability tables (no `update()` at decode) |",
        f"| weights hash | `{model.hash.hex()}` (written into every bitstream) |",
        f"| rate levels | lambda = {', '.join(f'{v:g}' for v in cfg['lambdas'])} (MSE, CompressAI's qualities 1-6) |",
        "| training data | `../shared/datasets/natural-train`: BSDS300 (300) + BSDS500 test (200), random 256x256 crops, flips |",
        f"| training | {shipped.get('step')} steps of batch 4, Adam, lr 5e-4 with warm-up and cosine decay, each sample at a random level, "
        f"mixed quantisation (noise for the rate, straight-through rounding for the decoder); {hours:.2f} h on 2 CPU cores |",
        "| reproduce | `python -m codec.training.train_default --out runs/default --steps N` (resumable; `--init` starts from these weights), "
        "then `python -m codec.training.export runs/default/last.pt codec/zoo/weights/default.pt` |",
        "",
        f"## Kodak ({res['images']} images, full size), measured by `python -m codec.evaluation.jpeg_compare`",
        "",
        "bpp counts every byte of the `.udic` file; PSNR on 8-bit RGB; mean over the images.",
        "",
        "| quality | bpp | PSNR (dB) |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {p['quality']:g} | {p['bpp']:.4f} | {p['psnr']:.2f} |" for p in res["ours"]]
    lines += [
        "",
        f"BD-rate against JPEG (Pillow, 4:2:0, quality {res['jpeg420'][0]['quality']}-{res['jpeg420'][-1]['quality']}): "
        f"**{res['bd_rate_vs_jpeg420_pct']} %** (BD-PSNR {res['bd_psnr_vs_jpeg420_db']} dB); negative = fewer bits than JPEG.",
        "",
    ]
    if args.note:
        lines += ["## Notes", "", args.note, ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
