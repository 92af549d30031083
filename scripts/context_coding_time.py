"""How slow the serial context models code: encode and decode seconds of a 768x512 image.

``mbt2018`` and ``cheng2020-attn`` code y one latent position after the other (autoregressive
context), so their coding time grows with the pixel count and does not use more cores. Random
weights (``pretrained=False``) at the zoo's sizes: the time depends on the architecture, not the
weights. Each figure is the best of ``--repeats`` runs:

* ``encode_s``: CompressAI's ``compress`` (analysis + serial coding), canonical single thread;
* ``decode_s``: ``codec.decoding.decode_image`` of that file (serial decoding + synthesis);
* ``encode_verified_s``: ``udic encode``'s path (``encode_report``: the encode and the
  verification decode every file gets).

Usage: ``PYTHONPATH=. .venv/bin/python scripts/context_coding_time.py [--out docs/bench/context_coding_time.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from codec.coder import decode_image, encode_report, pad_image, to_tensor
from codec.determinism import canonical_compute
from codec.zoo import Registry

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from compressai.zoo.image import _load_model

CASES = (("mbt2018", 3), ("mbt2018", 6), ("cheng2020-attn", 3), ("cheng2020-attn", 6))


def _best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _measure(arch: str, quality: int, img: Image.Image, tmp: Path, repeats: int) -> dict[str, object]:
    """One architecture at one quality's size, registered as a checkpoint (random weights)."""
    torch.manual_seed(0)
    net = _load_model(arch, "mse", quality, pretrained=False)
    path = tmp / f"{arch}-{quality}.pth"
    torch.save(net.state_dict(), path)
    reg = Registry(capacity=1)
    reg.register_checkpoint("ctx", path, arch, 0.01)
    coder: Any = reg.get("ctx").net
    x = pad_image(to_tensor(np.asarray(img)))

    def encode() -> None:
        with canonical_compute():
            coder.compress(x)

    data = encode_report(img, model="ctx", registry=reg).data
    return {
        "model": arch,
        "quality": quality,
        "size": "768x512",
        "encode_s": round(_best(encode, repeats), 2),
        "decode_s": round(_best(lambda: decode_image(data, registry=reg), repeats), 2),
        "encode_verified_s": round(_best(lambda: encode_report(img, model="ctx", registry=reg), 1), 2),
        "bytes": len(data),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="/work/shared/datasets/kodak/kodim23.png")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="docs/bench/context_coding_time.json")
    args = ap.parse_args()
    with Image.open(args.image) as im:
        img = im.convert("RGB").resize((768, 512))
    load_start = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, quality in CASES:
            row = _measure(arch, quality, img, Path(tmp), args.repeats)
            print(json.dumps(row), flush=True)
            rows.append(row)
    out = {
        "rows": rows,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],  # at start, at end
        "note": "random weights (time depends on the architecture); best of the repeats; shared 2-core machine",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
