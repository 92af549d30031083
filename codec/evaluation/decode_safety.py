"""What a hostile bitstream costs the decoder, and what threads buy a large decode (issue 12).

Three measurements, each decode in its own process, its peak RSS counted from just before the
decode (VmHWM reset; importing torch and loading the model, ~870 MB here, is reported beside it):

* **crafted**: a real small encode whose IMAGE_SIZE is rewritten (CRC recomputed), as in the issue.
  At 8192x6100 it is now refused by the padded pixel limit (8192x6144 > 50 M); at 8000x6000 and at
  ``--claim`` (default 4032x3024), both inside the limit, by the z floor, before any entropy decoding.
* **crafted-padded-z**: the same, with the z section padded with random bytes up to the floor, so
  the decoder has to entropy-decode; the symbol hash refuses it before the synthesis.
* **threads**: a ``--size`` (default 4032x3024, 12 MP) image encoded once, then decoded with 1 and
  with 2 torch threads (synthesis only; entropy decoding is always canonical); time, peak RSS,
  and whether the pixels are equal.

    python -m codec.evaluation.decode_safety --out results/decode_safety.json
    python -m codec.evaluation.decode_safety --skip-threads   # the crafted files only (seconds)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from codec.bitstream import Container, Section

CRAFTED_SIZE = (8192, 6100)  # the file
INSIDE_SIZE = (8000, 6000)  # the same inside the 50 M limit, padded too


def _rss_mb(key: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident memory of this process, in MB (Linux ``/proc``;
    elsewhere the lifetime peak from ``getrusage``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> None:
    """Start VmHWM again from the current RSS, so the decode's own peak shows (Linux >= 4.0).
    Importing torch alone is ~580 MB resident here; that is not the decode's cost."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def child_decode(path: Path, threads: int, bit_exact: bool, save: Path | None) -> dict[str, object]:
    """Decode ``path`` in this process; time, peak RSS before and after, and the error if refused."""
    import torch

    from codec.decoding import decode_image
    from codec.zoo import default_registry

    torch.set_num_threads(threads)
    default_registry().get("default")  # model load is not the decode's cost
    data = path.read_bytes()
    _reset_peak()
    baseline = _rss_mb("VmRSS")
    t0 = time.perf_counter()
    result: dict[str, object] = {"threads": threads, "bit_exact": bit_exact, "baseline_rss_mb": round(baseline, 1)}
    try:
        img = decode_image(data, bit_exact=bit_exact)
        result["refused"] = None
        if save is not None:
            np.save(save, img.rgb)
    except Exception as exc:  # the point is to see which refusal it was
        result["refused"] = f"{type(exc).__name__} ({getattr(exc, 'kind', '?')}): {exc}"
    result["seconds"] = round(time.perf_counter() - t0, 3)
    result["peak_rss_mb"] = round(_rss_mb(), 1)
    result["decode_rss_mb"] = round(_rss_mb() - baseline, 1)  # what the decode itself added at its peak
    return result


def _run_child(path: Path, threads: int = 1, bit_exact: bool = False, save: Path | None = None) -> dict[str, object]:
    cmd = [sys.executable, "-m", "codec.evaluation.decode_safety", "--child", str(path), "--threads", str(threads)]
    cmd += ["--bit-exact"] if bit_exact else []
    cmd += ["--save", str(save)] if save is not None else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def small_real_file() -> bytes:
    """A real encode of a 128x96 Kodak crop (a synthetic picture without the datasets)."""
    from codec.coder import encode_report
    from codec.datasets import datasets_root

    root = datasets_root()
    if root is not None and (root / "kodak" / "kodim23.png").is_file():
        with Image.open(root / "kodak" / "kodim23.png") as im:
            rgb = np.asarray(im.convert("RGB"))[200:296, 300:428].copy()
    else:
        yy, xx = np.mgrid[0:96, 0:128]
        rgb = np.stack([xx * 2, yy * 2, (xx + yy)], axis=-1).astype(np.uint8)
    return encode_report(Image.fromarray(rgb), quality=3).data


def crafted(data: bytes, size: tuple[int, int], pad_z: bool = False) -> bytes:
    """``data`` claiming another image size (CRC recomputed); with ``pad_z`` its z section grown with
    random bytes to the floor for that size, so only entropy decoding can tell it is wrong."""
    from codec.decoding import check_claimed_size, min_z_bytes
    from codec.zoo import default_registry

    c = Container.from_bytes(data)
    c.set_image_size(*size)
    if pad_z:
        need = min_z_bytes(default_registry().get("default").net, check_claimed_size(*size, 1 << 62))
        z = c.sections[Section.Z]
        c.sections[Section.Z] = z + np.random.default_rng(0).bytes(max(0, need - len(z) + 64))
    return c.to_bytes()


def measure_crafted(tmp: Path, claim: tuple[int, int]) -> dict[str, object]:
    data = small_real_file()
    cases = {
        f"crafted {CRAFTED_SIZE[0]}x{CRAFTED_SIZE[1]}": crafted(data, CRAFTED_SIZE),
        f"crafted {INSIDE_SIZE[0]}x{INSIDE_SIZE[1]}": crafted(data, INSIDE_SIZE),
        f"crafted {claim[0]}x{claim[1]}": crafted(data, claim),
        f"crafted {claim[0]}x{claim[1]}, z padded to the floor": crafted(data, claim, pad_z=True),
    }
    out: dict[str, object] = {"source_bytes": len(data)}
    for name, blob in cases.items():
        path = tmp / "crafted.udic"
        path.write_bytes(blob)
        res = _run_child(path)
        res["bytes"] = len(blob)
        out[name] = res
        print(
            f"{name}: {len(blob)} B, {res['seconds']} s, +{res['decode_rss_mb']} MB over the process's "
            f"{res['baseline_rss_mb']} MB (torch and model loaded), refused: {res['refused']}"
        )
    return out


def measure_threads(tmp: Path, size: tuple[int, int]) -> dict[str, object]:
    """Encode a ``size`` image once (in a child), then one decode per thread count."""
    from codec.datasets import datasets_root

    src = tmp / "big.png"
    root = datasets_root()
    kodak = root / "kodak" / "kodim23.png" if root is not None else None
    with Image.open(kodak) if kodak is not None and kodak.is_file() else Image.new("RGB", (768, 512), "gray") as im:
        im.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(src)
    udic = tmp / "big.udic"
    code = "import sys; from codec.coder import encode; open(sys.argv[2], 'wb').write(encode(sys.argv[1], quality=3))"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(src), str(udic)], check=True, timeout=900)
    out: dict[str, object] = {"size": f"{size[0]}x{size[1]}", "encode_seconds": round(time.perf_counter() - t0, 1)}
    arrays = {}
    for threads in (1, 2):
        save = tmp / f"t{threads}.npy"
        res = _run_child(udic, threads=threads, save=save)
        arrays[threads] = np.load(save)
        out[f"{threads} thread(s)"] = res
        print(
            f"{size[0]}x{size[1]} decode, {threads} thread(s): {res['seconds']} s, peak RSS {res['peak_rss_mb']} MB "
            f"(+{res['decode_rss_mb']} MB)"
        )
    diff = arrays[1].astype(np.int16) - arrays[2].astype(np.int16)
    out["pixels_equal"] = bool(not diff.any())
    out["differing_values"] = int(np.count_nonzero(diff))
    out["max_abs_difference"] = int(np.abs(diff).max())
    print(f"1 vs 2 threads: {out['differing_values']} values differ, by at most {out['max_abs_difference']}")
    return out


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--claim", type=_size, default=(4032, 3024), help="a size inside the limit for the crafted files")
    ap.add_argument("--size", type=_size, default=(4032, 3024), help="image size for the thread comparison")
    ap.add_argument("--skip-threads", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("results/decode_safety.json"))
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--bit-exact", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--save", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child_decode(args.child, args.threads, args.bit_exact, args.save)))
        return 0
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["crafted"] = measure_crafted(Path(tmp), args.claim)
        if not args.skip_threads:
            results["threads"] = measure_threads(Path(tmp), args.size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
