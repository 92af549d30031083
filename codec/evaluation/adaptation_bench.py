"""Benchmark of the content-adaptive encode, per domain (issue: adaptive encode).

On the bench-256 crops (first ``--images`` files of each domain folder, most detailed 256x256
window, see ../shared/datasets/README.md) at several rate points of a variable-rate model, for
each image and rate: the plain encode, ``blr``, ``sga``, ``sga+adapters``, ``sga+omp``, ``dr``,
``dr+adapters``. Every point is a real file (bytes and decoded pixels). Writes a CSV of every
point and a CSV of the refinement curve, and prints per domain:

- BD-rate of each method against the same model with no adaptation (negative = saving);
- encode seconds per image for each method, decode seconds plain vs adapted;
- how fast the gain arrives: the share of the final latent-refinement gain reached at each tenth
  of the iterations, and when.

    python -m codec.evaluation.adaptation_bench --images 6 --latent-iters 2000 --decoder-iters 500
    python -m codec.evaluation.adaptation_bench --images 2 --latent-iters 100 --decoder-iters 50  # quick look
    python -m codec.evaluation.adaptation_bench --images 2 --latent-iters 250 --decoder-iters 100 \
        --latent-lr 5e-3 --decoder-lr 5e-3 --methods sga sga+adapters sga+qstep sga+qstep+adapters  # fast vs fast+qstep

Single-rate checkpoints (a user's ``udic models add NAME FILE --arch mbt2018-mean --lambda L``, one
per lambda, as CompressAI trains them) make one curve with ``--rate-models NAME1 NAME2 ...``
(lowest rate first): rate point k is checkpoint k, written as quality k. The models that
``udic models add`` kept (``var/storage/models.json``) are known here as they are to the CLI.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from codec.adaptation.encoder import AdaptConfig, AdaptiveEncoder
from codec.coder import decode_image, encode_report
from codec.datasets import DOMAINS, bench_images
from codec.determinism import best_device
from codec.evaluation.bd import bd_psnr, bd_rate, format_bd
from codec.evaluation.provenance import STAMP_KEY, weights_stamp
from codec.imageio import load_image
from codec.progress import no_progress
from codec.zoo import Registry, default_registry
from codec.zoo.user_models import register_user_models

METHODS = (
    "plain",
    "blr",
    "sga",
    "sga+adapters",
    "sga+omp",
    "dr",
    "dr+adapters",
    "sga+qstep",  # sga with the adaptive quantisation steps of seed 003 (codec.adaptation.qstep)
    "sga+qstep+adapters",
)


def median_decode_seconds(data: bytes, registry: Registry | None = None, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        decode_image(data, registry)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_image(
    rgb: np.ndarray, model: str, quality: float, base_cfg: AdaptConfig, methods: tuple[str, ...] = METHODS
) -> tuple[list[dict], list[tuple]]:
    """The methods on one image at one rate: rows of (method, bpp, psnr, seconds) and the curves."""
    reg = default_registry()
    base = reg.get(model)
    img = load_image(Image.fromarray(rgb))
    level = base.level_for(quality)
    rows, curves = [], []
    t = time.perf_counter()
    plain = encode_report(img, model=model, quality=quality)
    rows.append(
        {
            "method": "plain",
            "bpp": plain.bpp,
            "psnr": plain.psnr,
            "encode_s": time.perf_counter() - t,
            "decode_s": median_decode_seconds(plain.data),
        }
    )
    variants = (("blr", ()), ("sga", ("adapters", "omp")), ("dr", ("adapters",)), ("sga+qstep", ("adapters",)))
    for latent, all_decoders in variants:
        decoders = tuple(d for d in all_decoders if f"{latent}+{d}" in methods)
        if latent not in methods and not decoders:
            continue
        qstep = latent.endswith("+qstep")
        cfg = AdaptConfig(**{**base_cfg.__dict__, "latent": latent.removesuffix("+qstep"), "qstep": qstep})
        enc = AdaptiveEncoder(base, img, level, cfg, best_device(), no_progress, reg)
        t = time.perf_counter()
        with torch.no_grad():
            y0, z0 = enc.model.analysis(enc.x)
        yg, z = enc.refine_latents(y0, z0)
        latent_s = time.perf_counter() - t
        res = enc._code(yg, z, None)
        rows.append(
            {
                "method": latent,
                "bpp": res.bpp,
                "psnr": res.psnr,
                "encode_s": latent_s,
                "decode_s": median_decode_seconds(res.data),
            }
        )
        curves += [(latent, it, el, loss) for stage, it, el, loss in enc.curve if stage == "latent-hard"]
        for dec in decoders:
            t = time.perf_counter()
            out = enc.adapters_file(yg, z) if dec == "adapters" else enc.omp_file(yg, z)
            out = out if out is not None else res  # all-zero adapters: the latents-only file
            rows.append(
                {
                    "method": f"{latent}+{dec}",
                    "bpp": out.bpp,
                    "psnr": out.psnr,
                    "encode_s": latent_s + time.perf_counter() - t,
                    "decode_s": median_decode_seconds(out.data),
                }
            )
    return rows, curves


def rate_points(model: str, rate_models: list[str] | None, qualities: list[float]) -> dict[float, tuple[str, float]]:
    """Bench quality -> (model, the quality to code it at): a variable-rate model at each of
    ``qualities``, or checkpoint k of a single-rate family at its only level, as quality k."""
    if rate_models:
        return {float(k + 1): (name, 1.0) for k, name in enumerate(rate_models)}
    return {float(q): (model, float(q)) for q in qualities}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", nargs="+", default=list(DOMAINS))
    ap.add_argument("--images", type=int, default=6, help="first N bench-256 crops per domain")
    ap.add_argument("--qualities", type=float, nargs="+", default=[1.0, 2.5, 4.0, 5.5])
    ap.add_argument("--model", default="default")
    ap.add_argument("--rate-models", nargs="+", help="single-rate checkpoints, one per rate point (lowest first)")
    ap.add_argument("--latent-iters", type=int, default=2000)
    ap.add_argument("--decoder-iters", type=int, default=500)
    ap.add_argument("--latent-lr", type=float, default=1e-3)
    ap.add_argument("--decoder-lr", type=float, default=1e-3)
    ap.add_argument("--methods", nargs="+", default=[m for m in METHODS[1:] if "qstep" not in m], choices=METHODS[1:])
    ap.add_argument("--out", type=Path, default=Path("results/adaptation_bench"))
    ap.add_argument(
        "--merge", type=Path, nargs="+", help="only combine these earlier output folders into --out and summarise"
    )
    args = ap.parse_args(argv)
    methods = ("plain", *args.methods)
    register_user_models(default_registry())
    if args.merge:
        return merge(args.merge, args.out, args.domains, args.model, args.rate_models)
    cfg = AdaptConfig(
        latent_iters=args.latent_iters,
        latent_lr=args.latent_lr,
        decoder_iters=args.decoder_iters,
        decoder_lr=args.decoder_lr,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    points_csv, curve_csv = args.out / "points.csv", args.out / "curves.csv"
    done: set[tuple[str, str, float]] = set()
    if points_csv.exists():  # resumable: skip what an earlier run measured
        with open(points_csv, newline="") as f:
            done |= {(r["domain"], r["image"], float(r["quality"])) for r in csv.DictReader(f)}
    fields = ["domain", "image", "quality", "method", "bpp", "psnr", "encode_s", "decode_s"]
    new_points = not points_csv.exists()
    pf = open(points_csv, "a", newline="")  # noqa: SIM115
    cf = open(curve_csv, "a", newline="")  # noqa: SIM115
    pw, cw = csv.DictWriter(pf, fieldnames=fields), csv.writer(cf)
    if new_points:
        pw.writeheader()
        cw.writerow(["domain", "image", "quality", "variant", "iteration", "elapsed_s", "hard_rd_loss"])
    points = rate_points(args.model, args.rate_models, args.qualities)
    work = [(d, b, q) for d in args.domains for b in bench_images(d, args.images) for q in points]
    for domain, b, q in tqdm(work, desc="adaptation bench", unit="img*rate"):
        if (domain, b.name, q) in done:
            continue
        rows, curves = run_image(b.rgb, *points[q], cfg, methods)
        for r in rows:
            pw.writerow({"domain": domain, "image": b.name, "quality": q, **r})
        for variant, it, el, loss in curves:
            cw.writerow([domain, b.name, q, variant, it, f"{el:.3f}", f"{loss:.6f}"])
        pf.flush()
        cf.flush()
    pf.close()
    cf.close()
    summary = summarise(points_csv, curve_csv, args.domains, args.model, args.rate_models)
    summary[STAMP_KEY] = weights_stamp(args.rate_models or [args.model])
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\nconfig: latent {args.latent_iters} it (lr {args.latent_lr}), decoder {args.decoder_iters} it "
        f"(lr {args.decoder_lr}), {args.images} crops/domain, rate points {[points[q] for q in points]}; "
        f"csv in {args.out}"
    )
    return 0


def merge(sources: list[Path], out: Path, domains: list[str], model: str, rate_models: list[str] | None = None) -> int:
    """One points.csv / curves.csv from runs made in parallel (e.g. one process per core)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("points.csv", "curves.csv"):
        lines: list[str] = []
        for src in sources:
            src_lines = (src / name).read_text().splitlines()
            lines += src_lines if not lines else src_lines[1:]
        (out / name).write_text("\n".join(lines) + "\n")
    summary = summarise(out / "points.csv", out / "curves.csv", domains, model, rate_models)
    summary[STAMP_KEY] = weights_stamp(rate_models or [model])
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


def rd_saving_pct(plain: dict, row: dict, lmbda: float) -> float:
    """Real RD-cost saving of ``row`` against ``plain`` at the same lambda (bpp + lambda*255^2*MSE).

    Defined even where BD-rate is not (the adapted curve can lie wholly above the plain one)."""

    def cost(r: dict) -> float:
        return float(r["bpp"]) + lmbda * 255.0**2 * 10.0 ** (-float(r["psnr"]) / 10.0)

    return 100.0 * (cost(plain) - cost(row)) / cost(plain)


def summarise(
    points_csv: Path, curve_csv: Path, domains: list[str], model: str = "default", rate_models: list[str] | None = None
) -> dict:
    reg = default_registry()

    def lmbda_of(quality: float) -> float:
        name, q = rate_points(model, rate_models, [quality])[float(quality)]
        base = reg.get(name)
        return base.lmbda_at(base.level_for(q))

    with open(points_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    out: dict = {}
    for domain in domains:
        sel = [r for r in rows if r["domain"] == domain]
        if not sel:
            continue
        curves: dict[str, tuple[list[float], list[float]]] = {}
        for m in METHODS:
            bpps, psnrs = [], []
            for q in sorted({float(r["quality"]) for r in sel}):
                at_q = [r for r in sel if r["method"] == m and float(r["quality"]) == q]
                if at_q:
                    bpps.append(float(np.mean([float(p["bpp"]) for p in at_q])))
                    psnrs.append(float(np.mean([float(p["psnr"]) for p in at_q])))
            curves[m] = (bpps, psnrs)
        table: dict[str, dict[str, Any]] = {}
        plain_rows = {(r["image"], r["quality"]): r for r in sel if r["method"] == "plain"}
        for m in METHODS:
            enc = [float(r["encode_s"]) for r in sel if r["method"] == m]
            dec = [float(r["decode_s"]) for r in sel if r["method"] == m]
            ok = len(curves[m][0]) >= 2
            savings = [
                rd_saving_pct(plain_rows[(r["image"], r["quality"])], r, lmbda_of(float(r["quality"])))
                for r in sel
                if r["method"] == m and (r["image"], r["quality"]) in plain_rows
            ]
            table[m] = {
                "bd_rate_vs_plain_pct": format_bd(bd_rate, *curves["plain"], *curves[m]) if ok else "n/a",
                "bd_psnr_vs_plain_db": format_bd(bd_psnr, *curves["plain"], *curves[m]) if ok else "n/a",
                "rd_cost_saving_pct": float(np.mean(savings)) if savings else None,
                "encode_s": float(np.mean(enc)) if enc else None,
                "decode_s": float(np.mean(dec)) if dec else None,
            }
        out[domain] = table
        print(f"\n== {domain} ({len({r['image'] for r in sel})} images)")
        head = ("BD-rate %", "BD-PSNR dB", "RD cost %", "encode s", "decode s")
        print(f"{'method':14s} " + " ".join(f"{h:>10s}" for h in head))
        for m, v in table.items():
            enc_s = f"{v['encode_s']:.2f}" if v["encode_s"] is not None else "-"
            dec_s = f"{v['decode_s']:.3f}" if v["decode_s"] is not None else "-"
            rd = f"{-v['rd_cost_saving_pct']:+.1f}" if v["rd_cost_saving_pct"] is not None else "-"
            print(
                f"{m:14s} {v['bd_rate_vs_plain_pct']:>10s} {v['bd_psnr_vs_plain_db']:>10s} {rd:>10s} "
                f"{enc_s:>10s} {dec_s:>10s}"
            )
    out["gain_vs_iterations"] = gain_vs_iterations(curve_csv)
    return out


def gain_vs_iterations(curve_csv: Path) -> dict[str, list[tuple[float, float, float]]]:
    """How fast the gain arrives (sga, dr, blr; all domains): share of the final hard-loss gain per tenth."""
    with open(curve_csv, newline="") as f:
        curve_rows = list(csv.DictReader(f))
    by_run: dict[tuple, list[tuple[int, float, float]]] = defaultdict(list)
    for r in curve_rows:
        by_run[(r["domain"], r["image"], r["quality"], r["variant"])].append(
            (int(r["iteration"]), float(r["elapsed_s"]), float(r["hard_rd_loss"]))
        )
    speed: dict[str, list[tuple[float, float, float]]] = {}
    for variant in ("sga", "dr", "blr"):
        fracs: dict[int, list[float]] = defaultdict(list)
        times: dict[int, list[float]] = defaultdict(list)
        for key, pts in by_run.items():
            if key[3] != variant or len(pts) < 2:
                continue
            pts.sort()
            total = pts[-1][0]
            first, last = pts[0][2], min(p[2] for p in pts)
            gain = first - last
            for it, el, loss in pts:
                decile = round(10 * it / total)
                fracs[decile].append(1.0 if gain <= 0 else (first - min(loss, first)) / gain)
                times[decile].append(el)
        if fracs:
            speed[variant] = [(d / 10, float(np.mean(fracs[d])), float(np.mean(times[d]))) for d in sorted(fracs)]
    for variant, shares in speed.items():
        print(
            f"\n{variant}: share of the final latent-refinement gain reached, by fraction of the iterations "
            "(share@seconds)"
        )
        print("  " + "  ".join(f"{int(f * 100)}%:{s:.2f}@{t:.0f}s" for f, s, t in shares))
    return speed


if __name__ == "__main__":
    raise SystemExit(main())
