"""The last synthesis layer as a sub-pixel convolution (``codec.subpixel``): time and pixels.

Two measurements, side by side in one process:

- per transposed-convolution layer of the model's synthesis, at the sizes one 512-pixel decode
  tile (with its halo) gives it, on one thread and channels-last as the tiled decode runs them:
  seconds as a transposed convolution and as a sub-pixel convolution (median of ``--repeats``);
- whole decodes of one file, alternating the canonical path (``bit_exact=True``: transposed
  convolution) and the default one (sub-pixel last layer): median seconds, and how many 8-bit
  samples differ between the two.

    python -m codec.evaluation.subpixel_bench --out docs/bench/subpixel_decode.json

Without ``--file`` it decodes the 12 Mpixel mosaic of ``codec.evaluation.large_image_bench``
(quality 3, made on first use).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from codec import subpixel
from codec.coder import decode_image, encode_report
from codec.datasets import datasets_root
from codec.decoding import read_header
from codec.evaluation.large_image_bench import WORK, mosaic
from codec.tiling import DEFAULT_TILE
from codec.zoo import default_registry
from codec.zoo.context_models import synthesis_view


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare_layer(layer: nn.ConvTranspose2d, x: Tensor, repeats: int) -> dict[str, object]:
    """One layer (a channels-last copy: the model is shared) on ``x``, both ways."""
    fast = copy.deepcopy(layer).to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    t_deconv = _median_seconds(lambda: fast(xc), repeats)
    t_sub = _median_seconds(lambda: subpixel.run_layer(fast, xc), repeats)
    return {
        "in_out": [layer.in_channels, layer.out_channels],
        "input_hw": list(x.shape[-2:]),
        "transposed_s": round(t_deconv, 4),
        "subpixel_s": round(t_sub, 4),
        "speedup": round(t_deconv / t_sub, 2),
    }


def layer_times(model: str, repeats: int) -> list[dict[str, object]]:
    """Each transposed convolution of ``model``'s synthesis, both ways, at one tile's sizes."""
    g_s = synthesis_view(default_registry().get(model).net)
    side = DEFAULT_TILE + 4  # latents of one tile with its 2-latent halo on both sides
    rows: list[dict[str, object]] = []
    x = torch.randn(1, next(m for m in g_s.modules() if isinstance(m, nn.ConvTranspose2d)).in_channels, side, side)
    torch.set_num_threads(1)
    with torch.inference_mode():
        for i, layer in enumerate(g_s):
            if isinstance(layer, nn.ConvTranspose2d) and subpixel.applies(layer):
                rows.append({"layer": i, **compare_layer(layer, x, repeats)})
            x = layer(x)
    return rows


def decode_times(data: bytes, repeats: int, threads: int) -> dict[str, object]:
    """Alternating canonical and default decodes of ``data``: medians and differing samples."""
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {"canonical": [], "subpixel": []}
    images: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, exact in (("canonical", True), ("subpixel", False)):
            t0 = time.perf_counter()
            images[name] = decode_image(data, bit_exact=exact).rgb
            times[name].append(time.perf_counter() - t0)
    diff = np.abs(images["canonical"].astype(np.int16) - images["subpixel"].astype(np.int16))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "threads": threads,
        "size": f"{images['canonical'].shape[1]}x{images['canonical'].shape[0]}",
        "seconds": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "median_canonical_s": round(med["canonical"], 2),
        "median_subpixel_s": round(med["subpixel"], 2),
        "speedup": round(med["canonical"] / med["subpixel"], 3),
        "samples_differing": int((diff > 0).sum()),
        "samples": int(diff.size),
        "max_difference": int(diff.max()),
    }


def default_file() -> bytes:
    """The 12 Mpixel mosaic of large_image_bench at quality 3, encoded on first use."""
    bits = WORK / "mosaic_4032x3024_q3_tiled.udic"
    if not bits.exists():
        root = datasets_root()
        if root is None:
            raise SystemExit("the shared datasets are not here (see codec.datasets)")
        png = WORK / "mosaic_4032x3024.png"
        WORK.mkdir(parents=True, exist_ok=True)
        if not png.exists():
            mosaic(4032, 3024, root / "kodak").save(png, compress_level=1)
        bits.write_bytes(encode_report(png, quality=3.0).data)
    return bits.read_bytes()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--file", type=Path, help="a .udic file (default: the 12 Mpixel mosaic)")
    p.add_argument("--model", default="default")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--layer-repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    data = args.file.read_bytes() if args.file else default_file()
    report: dict[str, object] = {
        "file": str(args.file or WORK / "mosaic_4032x3024_q3_tiled.udic"),
        "file_model": "{model}@{model_hash}".format(**read_header(data)),
        "load_average_at_start": round(os.getloadavg()[0], 1),
        "layers_one_thread": layer_times(args.model, args.layer_repeats),
        "decode": decode_times(data, args.repeats, args.threads),
        "load_average_at_end": round(os.getloadavg()[0], 1),
        "command": "python -m codec.evaluation.subpixel_bench" + (f" --file {args.file}" if args.file else ""),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
