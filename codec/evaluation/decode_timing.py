"""Decode time of adapted bitstreams against plain ones of the same model (issue: adaptive encode).

The other benchmarks time decodes while they also optimise, often next to other jobs; this one
only decodes, on an otherwise idle machine, interleaving the two kinds so drift hits both alike.
Per domain: the first bench-256 crop at one rate, a plain file and a latents+adapters file (the
adapter section is always written here, whatever the encoder's final choice would be), each
decoded ``--repeats`` times; medians and their ratio are printed and written as JSON.

    python -m codec.evaluation.decode_timing --repeats 15 --out results/decode_timing.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from codec.adaptation.encoder import PRESETS, AdaptiveEncoder
from codec.coder import decode_image, encode_report
from codec.datasets import DOMAINS, bench_images
from codec.evaluation.provenance import STAMP_KEY, weights_stamp
from codec.imageio import CodecImage, load_image
from codec.progress import no_progress
from codec.zoo import default_registry


def adapted_file(img: CodecImage, model: str, quality: float) -> bytes | None:
    """A latents+adapters bitstream of ``img`` with the default preset's schedule."""
    reg = default_registry()
    base = reg.get(model)
    cfg = PRESETS["fast"]
    enc = AdaptiveEncoder(base, img, base.level_for(quality), cfg, torch.device("cpu"), no_progress, reg)
    with torch.no_grad():
        y0, z0 = enc.model.analysis(enc.x)
    out = enc.adapters_file(*enc.refine_latents(y0, z0))
    return None if out is None else out.data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", nargs="+", default=list(DOMAINS))
    ap.add_argument("--quality", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", type=Path, default=Path("results/decode_timing.json"))
    args = ap.parse_args(argv)
    out: dict[str, dict[str, Any]] = {}
    print(f"{'domain':8s} {'plain ms':>9s} {'adapted ms':>11s} {'ratio':>6s}")
    for domain in args.domains:
        img = load_image(Image.fromarray(bench_images(domain, 1)[0].rgb))
        plain = encode_report(img, model=args.model, quality=args.quality).data
        adapted = adapted_file(img, args.model, args.quality)
        if adapted is None:
            print(f"{domain:8s} (the adapters came out all zero: nothing to time)")
            continue
        decode_image(plain), decode_image(adapted)  # warm caches (model, adapter code paths)
        tp: list[float] = []
        ta: list[float] = []
        for _ in range(args.repeats):
            for data, acc in ((plain, tp), (adapted, ta)):
                t = time.perf_counter()
                decode_image(data)
                acc.append(time.perf_counter() - t)
        p, a = statistics.median(tp), statistics.median(ta)
        out[domain] = {"plain_s": p, "adapted_s": a, "ratio": a / p}
        print(f"{domain:8s} {p * 1e3:9.1f} {a * 1e3:11.1f} {a / p:6.3f}")
    ratios = [v["ratio"] for v in out.values()]
    if ratios:
        out["all"] = {"median_ratio": statistics.median(ratios), "max_ratio": max(ratios)}
        print(f"median ratio {statistics.median(ratios):.3f}, max {max(ratios):.3f}")
    out[STAMP_KEY] = weights_stamp([args.model])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
