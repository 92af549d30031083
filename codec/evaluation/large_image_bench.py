"""Peak memory and seconds of a plain encode and decode at 1, 12 and 48 Mpixel (issue 12).

Each case runs in its own process (``--child``), so its peak RSS (``ru_maxrss``) is the whole
process as a user sees it: Python, torch, the model and the coding. The process reports that peak,
the RSS just before coding (imports + model: what the coding did not cause), and the seconds of
the coding call alone (``encode_report`` from the image file to verified bytes; ``decode_image``
from bytes to 8-bit pixels, then the PNG write timed apart), and the CPU seconds of all its
threads (on a shared machine wall time also counts the other processes' use of the cores).

The images are photographs at the target sizes: a mosaic of the 24 Kodak pictures, each upscaled
2x (bicubic), so the content is real photo texture at phone-camera scale rather than noise or flat
colour (both of which would flatter or punish the entropy coder). Tiled coding is what runs at the
configured threshold (``codec.tiling``); ``--whole-up-to`` also runs the single-tile path for sizes
up to that many pixels, for comparison (the 48 MP whole encode took 10 GB: not run by default).

    python -m codec.evaluation.large_image_bench --out docs/bench/large_image_bench.json
    python -m codec.evaluation.large_image_bench --sizes 4032x3024 --ops decode
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from codec.datasets import datasets_root

SIZES = ((1152, 864), (4032, 3024), (8000, 6000))
WORK = Path("var/bench/large")


def mosaic(width: int, height: int, kodak: Path) -> Image.Image:
    """Kodak pictures upscaled 2x, laid out row by row until the frame is full (cycling)."""
    files = sorted(kodak.glob("kodim*.png"))
    if not files:
        raise SystemExit(f"no Kodak images in {kodak}")
    canvas = Image.new("RGB", (width, height))
    i, y = 0, 0
    while y < height:
        x, row_h = 0, 0
        while x < width:
            with Image.open(files[i % len(files)]) as im:
                tile = im.convert("RGB").resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC)
            canvas.paste(tile, (x, y))
            x, row_h, i = x + tile.width, max(row_h, tile.height), i + 1
        y += row_h
    return canvas


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (less sensitive to a loaded machine than wall time)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def child(op: str, src: Path, dst: Path, quality: float, threshold: int | None) -> dict[str, object]:
    """One encode or decode in this process: seconds of the coding call and peak RSS."""
    import torch

    from codec.coder import decode_image, encode_report
    from codec.decoding import read_header
    from codec.tiling import TilingPolicy, tiling_policy
    from codec.zoo import default_registry

    default_registry().get("default")
    policy = TilingPolicy() if threshold is None else TilingPolicy(threshold_pixels=threshold)
    before = _current_rss_mb()
    out: dict[str, object] = {"op": op, "threads": torch.get_num_threads(), "rss_before_mb": round(before, 1)}
    cpu0 = _cpu_seconds()
    with tiling_policy(policy):
        t0 = time.perf_counter()
        if op == "encode":
            res = encode_report(src, quality=quality)
            out["seconds"] = round(time.perf_counter() - t0, 2)
            dst.write_bytes(res.data)
            out.update(bytes=len(res.data), bpp=round(res.bpp, 4), psnr=round(res.psnr, 3))
        else:
            data = src.read_bytes()
            img = decode_image(data)
            out["seconds"] = round(time.perf_counter() - t0, 2)
            t1 = time.perf_counter()
            img.to_pil().save(dst, format="PNG", compress_level=1)
            out["png_write_seconds"] = round(time.perf_counter() - t1, 2)
    # the weights the file names (a decode-only run may read files made with earlier weights)
    out["model"] = "{model}@{model_hash}".format(**read_header(dst.read_bytes() if op == "encode" else data))
    out["cpu_seconds"] = round(_cpu_seconds() - cpu0, 2)  # all threads, PNG write included for decode
    out["peak_rss_mb"] = round(_rss_mb(), 1)
    return out


def pixel_bound(png: Path, quality: float) -> dict[str, object]:
    """Tiled against whole-image coding of one image (in this process): are the Y/Z sections the
    same, and how far apart are the two files' canonical (verified) decodes."""
    import numpy as np

    from codec.bitstream import Container, Section
    from codec.coder import encode_report
    from codec.tiling import TilingPolicy, tiling_policy

    with tiling_policy(TilingPolicy(threshold_pixels=1 << 62)):
        whole = encode_report(png, quality=quality)
    with tiling_policy(TilingPolicy(threshold_pixels=0)):
        tiled = encode_report(png, quality=quality)
    cw, ct = Container.from_bytes(whole.data), Container.from_bytes(tiled.data)
    diff = np.abs(whole.decoded.rgb.astype(np.int16) - tiled.decoded.rgb.astype(np.int16))
    return {
        "size": f"{whole.width}x{whole.height}",
        "same_y_z_sections": all(cw.sections[t] == ct.sections[t] for t in (Section.Y, Section.Z)),
        "bytes_whole": len(whole.data),
        "bytes_tiled": len(tiled.data),
        "differing_samples": int((diff > 0).sum()),
        "differing_fraction": float((diff > 0).mean()),
        "max_level_difference": int(diff.max()),
        "psnr_whole": round(whole.psnr, 4),
        "psnr_tiled": round(tiled.psnr, 4),
    }


def run_case(op: str, src: Path, dst: Path, quality: float, threshold: int | None) -> dict[str, object]:
    cmd = [sys.executable, "-m", "codec.evaluation.large_image_bench", "--child", op, str(src), str(dst)]
    cmd += ["--quality", str(quality)] + (["--threshold", str(threshold)] if threshold is not None else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{op} {src} failed:\n{proc.stderr[-2000:]}")
    res = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    res["process_seconds"] = round(time.perf_counter() - t0, 2)  # imports and model load included
    return res


def measure(size: tuple[int, int], ops: list[str], quality: float, whole: bool, kodak: Path) -> dict[str, object]:
    w, h = size
    WORK.mkdir(parents=True, exist_ok=True)
    png = WORK / f"mosaic_{w}x{h}.png"
    if not png.exists():
        mosaic(w, h, kodak).save(png, compress_level=1)
    row: dict[str, object] = {"size": f"{w}x{h}", "megapixels": round(w * h / 1e6, 2)}
    modes = [("tiled", None)] + ([("whole", 1 << 62)] if whole else [])
    for mode, threshold in modes:
        bits = WORK / f"mosaic_{w}x{h}_q{quality:g}_{mode}.udic"
        for op in ops:
            src, dst = (png, bits) if op == "encode" else (bits, WORK / f"decoded_{w}x{h}_{mode}.png")
            res = run_case(op, src, dst, quality, threshold)
            row[f"{op}_{mode}"] = res
            print(f"{w}x{h} {op} {mode}: {res['seconds']} s, peak {res['peak_rss_mb']} MB", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", nargs=3, metavar=("OP", "SRC", "DST"), help=argparse.SUPPRESS)
    p.add_argument("--threshold", type=int, help=argparse.SUPPRESS)
    p.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES))
    p.add_argument("--ops", default="encode,decode")
    p.add_argument("--quality", type=float, default=3.0)
    p.add_argument("--whole-up-to", type=int, default=0, help="also run the single-tile path up to this many pixels")
    p.add_argument("--kodak", type=Path, help="the Kodak folder (default: the shared datasets' kodak/)")
    p.add_argument("--pixel-bound", metavar="WxH", help="only compare tiled and whole coding of that mosaic")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.kodak is None:
        root = datasets_root()
        args.kodak = (root or Path("datasets")) / "kodak"
    if args.pixel_bound:
        w, h = (int(v) for v in args.pixel_bound.split("x"))
        WORK.mkdir(parents=True, exist_ok=True)
        png = WORK / f"mosaic_{w}x{h}.png"
        if not png.exists():
            mosaic(w, h, args.kodak).save(png, compress_level=1)
        bound = pixel_bound(png, args.quality)
        print(json.dumps(bound, indent=2))
        if args.out:
            args.out.write_text(json.dumps(bound, indent=2) + "\n")
        return 0
    if args.child:
        op, src, dst = args.child
        print(json.dumps(child(op, Path(src), Path(dst), args.quality, args.threshold)))
        return 0
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows = [measure((w, h), args.ops.split(","), args.quality, w * h <= args.whole_up_to, args.kodak) for w, h in sizes]
    report = {
        "command": "python -m codec.evaluation.large_image_bench " + " ".join(argv or sys.argv[1:]),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "quality": args.quality,
        "rows": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
