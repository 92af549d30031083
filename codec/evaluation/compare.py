"""Our codec against conventional codecs, per domain: CSV, BD-rate tables, RD plots.

    udic eval                                   # six domains, bench-256 (6 crops each), all codecs
    udic eval --domains kodak line --images 2   # a quick look
    udic eval --adapt fast                      # add an adaptive preset of ours (slow on CPU)
    udic eval --kodak-full                      # also full Kodak vs published VVC and WACV 2023 results

Same crops, PSNR and bpp definitions as everywhere (``codec.metrics``, ``codec.datasets``): bench-256 windows,
PSNR on 8-bit RGB, bpp from every byte of each real file. Curves are the mean bpp and mean PSNR
over the images at each setting. The VVC 4:4:4 (VTM) points are the published reference results
for exactly these crops (../shared/datasets/reference/vtm444-bench256); our own ``vvc420`` is
libvvenc at 4:2:0 10-bit, said so in the tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from codec.adaptation.config import PRESET_NAMES
from codec.coder import decode_image
from codec.datasets import DOMAINS, bench_images, datasets_root, list_images
from codec.evaluation.bd import bd_psnr, bd_rate, format_bd
from codec.evaluation.conventional import CODECS, Codec
from codec.evaluation.provenance import STAMP_KEY, weights_stamp
from codec.metrics import ms_ssim, psnr
from codec.pipeline import EncodeRequest, encode
from codec.zoo import ModelError, default_registry, parse_checkpoint, register_checkpoint

OURS = "udic"
# fn(rgb, setting) -> (file bytes, decoded rgb, encode seconds, decode seconds)
CodeFn = Callable[[np.ndarray, float], tuple[bytes, np.ndarray, float, float]]
Runner = tuple[str, list[float], CodeFn, Callable[[float], str]]  # label, settings, fn, describe(setting)
FIELDS = [
    "domain",
    "codec",
    "image",
    "setting",
    "settings_text",
    "bytes",
    "bpp",
    "psnr",
    "ms_ssim",
    "encode_s",
    "decode_s",
]


def _row(
    domain: str,
    codec: str,
    image: str,
    setting: float,
    text: str,
    nbytes: int,
    px: int,
    rgb: np.ndarray | None,
    dec: np.ndarray | None,
    enc_s: float,
    dec_s: float,
    psnr_value: float | None = None,
) -> dict[str, object]:
    if psnr_value is None:
        assert rgb is not None and dec is not None  # a row without a given PSNR has the pixels
        psnr_value = psnr(rgb, dec)
    return {
        "domain": domain,
        "codec": codec,
        "image": image,
        "setting": setting,
        "settings_text": text,
        "bytes": nbytes,
        "bpp": nbytes * 8 / px,
        "psnr": psnr_value,
        "ms_ssim": ms_ssim(rgb, dec) if rgb is not None and dec is not None else float("nan"),
        "encode_s": enc_s,
        "decode_s": dec_s,
    }


def our_points(name: str, qualities: list[float], adapt: str) -> tuple[str, list[float], CodeFn]:
    """(codec label, settings, fn(rgb, q) -> (bytes, decoded, enc_s, dec_s)) for our codec."""

    def run(rgb: np.ndarray, q: float) -> tuple[bytes, np.ndarray, float, float]:
        t = time.perf_counter()
        data = encode(Image.fromarray(rgb), EncodeRequest(model=name, quality=q, adaptation=adapt)).data
        enc = time.perf_counter() - t
        t = time.perf_counter()
        dec = decode_image(data, bit_exact=True).rgb  # reproducible pixels: the canonical path
        return data, dec, enc, time.perf_counter() - t

    label = (
        OURS if (name == "default" and adapt == "none") else f"{OURS}-{name}" + ("" if adapt == "none" else f"-{adapt}")
    )
    return label, qualities, run


def vtm_reference(domain: str) -> list[dict[str, object]]:
    root = datasets_root()
    path = root / "reference" / "vtm444-bench256" / f"{domain}.csv" if root else None
    if path is None or not path.is_file():
        return []
    with open(path, newline="") as f:
        return [
            {
                "domain": domain,
                "codec": "vtm444-ref",
                "image": r["file"],
                "setting": float(r["qp"]),
                "settings_text": f"VTM 23.13 intra 4:4:4 qp={r['qp']} (published reference)",
                "bytes": int(r["bytes"]),
                "bpp": float(r["bpp"]),
                "psnr": float(r["psnr_rgb"]),
                "ms_ssim": float("nan"),
                "encode_s": float("nan"),
                "decode_s": float("nan"),
            }
            for r in csv.DictReader(f)
        ]


def curves(rows: list[dict[str, Any]], images: set[str] | None = None) -> dict[str, tuple[list[float], list[float]]]:
    """Mean (bpp, PSNR) per setting, per codec, sorted by rate; only images in ``images`` if given."""
    by: dict[str, dict[float, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if images is not None and r["image"] not in images:
            continue
        if not np.isfinite(float(r["psnr"])):
            continue
        by[str(r["codec"])][float(r["setting"])].append((float(r["bpp"]), float(r["psnr"])))
    out = {}
    for codec, settings in by.items():
        pts = sorted((float(np.mean([p[0] for p in v])), float(np.mean([p[1] for p in v]))) for v in settings.values())
        out[codec] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def bd_table(cv: dict[str, tuple[list[float], list[float]]], anchor: str) -> dict[str, dict[str, str]]:
    if anchor not in cv:
        return {}
    return {
        c: {"bd_rate_pct": format_bd(bd_rate, *cv[anchor], *v), "bd_psnr_db": format_bd(bd_psnr, *cv[anchor], *v)}
        for c, v in cv.items()
    }


def plot(cv: dict[str, tuple[list[float], list[float]]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    for codec, (b, p) in sorted(cv.items()):
        style = "-o" if codec.startswith(OURS) else ("--s" if "ref" in codec or "published" in codec else "-.")
        ax.plot(b, p, style, label=codec, linewidth=2.2 if codec.startswith(OURS) else 1.2, markersize=3)
    ax.set_xlabel("bpp (all bytes of the file)")
    ax.set_ylabel("PSNR (dB, 8-bit RGB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.set_xlim(left=0, right=min(4.0, max(max(b) for b, _ in cv.values()) * 1.05))
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def kodak_full(out: Path, qualities: list[float], model: str) -> dict[str, object]:
    """Full-size Kodak: ours against the published per-image VVC (VTM) and WACV 2023 results."""
    root = datasets_root()
    assert root is not None
    ref = root / "reference" / "universal-dic"
    order = (ref / "natural_order.txt").read_text().split()
    rows: list[dict[str, object]] = []
    for qp in (24, 27, 30, 33, 36, 39, 42):
        with open(ref / f"vvc_q{qp}_natural.csv", newline="") as f:
            for r in csv.DictReader(f):
                rows.append(
                    {
                        "codec": "vvc-vtm-published",
                        "image": order[int(r[""])],
                        "setting": qp,
                        "bpp": float(r["bpp"]),
                        "psnr": float(r["psnr"]),
                    }
                )
    for q in range(1, 7):
        with open(ref / f"tsubota_q{q}_natural.csv", newline="") as f:
            for r in csv.DictReader(f):
                rows.append(
                    {
                        "codec": "wacv2023-published",
                        "image": r[""],
                        "setting": q,
                        "bpp": float(r["bpp"]),
                        "psnr": float(r["psnr"]),
                    }
                )
    label, settings, run = our_points(model, qualities, "none")
    files = list_images(root / "kodak")
    for path in tqdm(files, desc="kodak full", unit="img"):
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        for quality in settings:
            data, dec, _, _ = run(rgb, quality)
            rows.append(
                {
                    "codec": label,
                    "image": path.name,
                    "setting": quality,
                    "bpp": len(data) * 8 / rgb.shape[0] / rgb.shape[1],
                    "psnr": psnr(rgb, dec),
                }
            )
    with open(out / "kodak_full.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["codec", "image", "setting", "bpp", "psnr"])
        w.writeheader()
        w.writerows(rows)
    cv = curves(rows)
    plot(cv, "Kodak (24 full images): ours vs published VVC and WACV 2023", out / "plots" / "kodak_full.png")
    table = bd_table(cv, "vvc-vtm-published")
    print("\n== Kodak, 24 full images: BD against VVC (VTM, published)")
    for c, v in table.items():
        print(f"  {c:22s} BD-rate {v['bd_rate_pct']:>10s} %   BD-PSNR {v['bd_psnr_db']:>10s} dB")
    return {"vs_vvc": table, "curves": cv}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="udic eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=list(DOMAINS))
    ap.add_argument("--images", type=int, default=6, help="first N bench-256 crops per domain")
    ap.add_argument("--codecs", nargs="+", default=list(CODECS), choices=list(CODECS))
    ap.add_argument("--model", default="default")
    ap.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=PATH[@ARCH]",
        help="register a checkpoint or exported weights under NAME (then --model NAME); repeatable",
    )
    ap.add_argument("--qualities", type=float, nargs="+", default=[1, 2, 3, 4, 5, 6])
    ap.add_argument(
        "--adapt", nargs="*", default=[], choices=PRESET_NAMES, help="adaptive presets of ours to add (e.g. fast)"
    )
    ap.add_argument(
        "--zoo",
        nargs="*",
        default=["bmshj2018-hyperprior", "mbt2018-mean"],
        help="CompressAI pretrained models to add when their weights are present locally",
    )
    ap.add_argument("--kodak-full", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("results/eval"))
    return ap


def _conventional(codec: Codec) -> CodeFn:
    def run(rgb: np.ndarray, s: float) -> tuple[bytes, np.ndarray, float, float]:
        t = time.perf_counter()
        data = codec.encode(rgb, s)
        enc = time.perf_counter() - t
        t = time.perf_counter()
        dec = codec.decode(data, rgb.shape[1], rgb.shape[0])
        return data, dec, enc, time.perf_counter() - t

    return run


def _ours_text(model: str, adaptation: str) -> Callable[[float], str]:
    how = "(plain)" if adaptation == "none" else f"adaptation={adaptation}"
    return lambda q: f"udic {model} quality={q:g} {how}"


def _zoo_text(zoo: str) -> Callable[[float], str]:
    return lambda q: f"CompressAI {zoo} quality={q:g} (pretrained)"


def _runners(args: argparse.Namespace) -> list[Runner]:
    """Ours (plain first: the BD anchor), our adaptive presets, the zoo models here, the conventional codecs."""
    runners: list[Runner] = []
    label, qs, fn = our_points(args.model, args.qualities, "none")
    runners.append((label, qs, fn, _ours_text(args.model, "none")))
    for preset in args.adapt:
        label, qs, fn = our_points(args.model, args.qualities, preset)
        runners.append((label, qs, fn, _ours_text(args.model, preset)))
    for zoo in args.zoo:
        try:
            default_registry().get(zoo, 1)
        except ModelError as exc:
            print(f"skipping {zoo}: {exc}")
            continue
        label, qs, fn = our_points(zoo, [1, 2, 3, 4, 5, 6], "none")
        runners.append((f"compressai-{zoo}", qs, fn, _zoo_text(zoo)))
    for name in args.codecs:
        codec = CODECS[name]
        runners.append((name, list(codec.settings), _conventional(codec), codec.describe))
    return runners


def _measure(domains: list[str], n_images: int, runners: list[Runner]) -> list[dict[str, object]]:
    """One row per (domain, crop, codec, setting), plus the published VTM rows for the same crops."""
    images = {d: bench_images(d, n_images) for d in domains}
    total = sum(len(v) for v in images.values()) * sum(len(r[1]) for r in runners)
    rows: list[dict[str, object]] = []
    bar = tqdm(total=total, desc="eval", unit="enc")
    for domain, crops in images.items():
        for b in crops:
            px = b.rgb.shape[0] * b.rgb.shape[1]
            for label, settings, fn, describe in runners:
                for s in settings:
                    data, dec, enc_s, dec_s = fn(b.rgb, s)
                    rows.append(_row(domain, label, b.name, s, describe(s), len(data), px, b.rgb, dec, enc_s, dec_s))
                    bar.update()
        names = {b.name for b in crops}
        rows += [r for r in vtm_reference(domain) if r["image"] in names]
    bar.close()
    return rows


def _domain_summary(domain: str, rows: list[dict[str, object]], anchor: str, args: argparse.Namespace) -> object:
    """BD tables of one domain against our plain encode and VTM; plotted and printed."""
    cv = curves([r for r in rows if r["domain"] == domain])
    vs_ours, vs_vvc = bd_table(cv, anchor), bd_table(cv, "vtm444-ref")
    plot(cv, f"{domain}: bench-256, {args.images} crops", args.out / "plots" / f"{domain}.png")
    print(f"\n== {domain} ({args.images} crops of 256x256): BD-rate % (negative = fewer bits than the anchor)")
    print(f"  {'codec':26s} {'vs ' + anchor:>12s} {'vs VTM 4:4:4':>14s}   note")
    for c in cv:
        note = CODECS[c].note if c in CODECS else ("published reference" if c == "vtm444-ref" else "")
        print(
            f"  {c:26s} {vs_ours.get(c, {}).get('bd_rate_pct', '-'):>12s} "
            f"{vs_vvc.get(c, {}).get('bd_rate_pct', '-'):>14s}   {note}"
        )
    return {"vs_" + anchor: vs_ours, "vs_vtm444": vs_vvc}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if len(set(args.qualities)) < 2:  # a BD-rate integrates between curves: one point is no curve
        print("udic eval: error: give at least two --qualities (BD-rates need a curve)", file=sys.stderr)
        return 2
    for spec in args.checkpoint:
        entry = parse_checkpoint(spec)
        register_checkpoint(entry.name, entry.path, entry.arch)
    try:  # a missing or broken model is one line, before any work
        default_registry().get(args.model)
    except ModelError as exc:
        print(f"udic eval: error: {exc}", file=sys.stderr)
        return 3  # as the udic CLI: a model that is not available
    if datasets_root() is None:
        raise SystemExit("udic eval: error: ../shared/datasets not found (set UDIC_DATASETS)")
    args.out.mkdir(parents=True, exist_ok=True)
    runners = _runners(args)
    rows = _measure(args.domains, args.images, runners)
    with open(args.out / "points.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    anchor = runners[0][0]
    summary: dict[str, object] = {domain: _domain_summary(domain, rows, anchor, args) for domain in args.domains}
    if args.kodak_full:
        summary["kodak_full"] = kodak_full(args.out, args.qualities, args.model)
    summary[STAMP_KEY] = weights_stamp([args.model])
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\npoints: {args.out / 'points.csv'}; plots: {args.out / 'plots'}; summary: {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
