"""Benchmark of few-shot domain adapters, per out-of-domain set (issue: domain adapters).

For each out-of-domain folder of ../shared/datasets, the files sorted by name are split in two
halves. Domain adapters are trained on the first ``n`` files of the first half for each ``n`` of
``--samples`` (capped at the half: comic has 24 files, so its "25" is 12). Evaluation uses the
bench-256 crop (most detailed 256x256 window) of the first ``--eval-images`` files of the second
half, at several rate points of the embedded model. Every point is a real file. Per image and rate:

- ``plain``: the un-adapted model;
- ``domain-<n>``: the model with the ``n``-sample domain adapter (no per-image work);
- ``adapt``: per-image adaptation alone (preset ``--adapt``);
- ``adapt+domain-<n>``: both, for the largest ``n``.

It prints and writes (summary.json) per domain: BD-rate of each against ``plain`` (negative =
saving), decode seconds with and without the domain adapter, training seconds, and how often
``domain=auto`` (choosing among the adapters of *all* sets trained with the same ``n``) picks the
adapter of the image's own set, over up to ``--auto-images`` crops of the second half.

    python -m codec.evaluation.domain_bench                       # the README table
    python -m codec.evaluation.domain_bench --domains pixel --samples 5 --steps 50 --stage2-steps 10 \\
        --eval-images 1 --qualities 2 4 --out /tmp/db                # a quick look
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from codec.adaptation.encoder import adaptive_encode
from codec.coder import encode_report
from codec.datasets import OUT_OF_DOMAIN, bench_crop, datasets_root, list_images
from codec.domains.auto import choose_domain
from codec.domains.store import DomainStore
from codec.domains.train import train_domain
from codec.evaluation.adaptation_bench import median_decode_seconds
from codec.evaluation.bd import bd_rate, format_bd
from codec.evaluation.provenance import STAMP_KEY, weights_stamp
from codec.imageio import load_image
from codec.models.gained import GainedMeanScaleHyperprior
from codec.zoo.registry import Registry

FIELDS = ["domain", "image", "quality", "method", "bpp", "psnr", "encode_s", "decode_s"]


def _split(domain: str) -> tuple[list[Path], list[Path]]:
    root = datasets_root()
    if root is None:
        raise FileNotFoundError("../shared/datasets is not on this machine (set UDIC_DATASETS)")
    files = list_images(root / domain)
    half = len(files) // 2
    return files[:half], files[half:]


def train_all(args: argparse.Namespace, reg: Registry) -> dict:
    """Train (or reuse) one adapter per (domain, n); returns {domain: {n: record summary}}."""
    path = args.out / "trained.json"
    trained: dict = json.loads(path.read_text()) if path.exists() else {}
    base = reg.get(args.model)
    if not isinstance(base.net, GainedMeanScaleHyperprior):
        raise SystemExit(f"domain adapters need a variable-rate model, not {base.name}")
    for domain in args.domains:
        pool, _ = _split(domain)
        for n in args.samples:
            if str(n) in trained.get(domain, {}):
                continue
            files = pool[:n]
            images = [load_image(p) for p in files]
            t = time.perf_counter()
            result = train_domain(
                base.net,
                images,
                steps=args.steps,
                stage2_steps=args.stage2_steps,
                crop=args.crop,
                show=True,
            )
            seconds = time.perf_counter() - t
            rec = _store(args.out, n).save(f"{domain}-{n}", base.name, base.hash, result)
            trained.setdefault(domain, {})[str(n)] = {
                "id": rec.id,
                "files": len(files),
                "n_train": result.n_train,
                "n_val": result.n_val,
                "steps": list(result.steps),
                "train_s": round(seconds, 1),
                "validation_gain_pct": round(result.gain_pct, 2),
            }
            path.write_text(json.dumps(trained, indent=2))
            print(f"{domain}: {n}-sample adapter {rec.id} in {seconds:.0f} s, validation gain {result.gain_pct:.1f}%")
    return trained


def _store(out: Path, n: int) -> DomainStore:
    return DomainStore(out / f"store-{n}")


def _registry(out: Path, n: int) -> Registry:
    return Registry(domains_dir=out / f"store-{n}")


def evaluate(args: argparse.Namespace, trained: dict) -> Path:
    points = args.out / "points.csv"
    done: set[tuple[str, str, float]] = set()
    if points.exists():
        with open(points, newline="") as f:
            done = {(r["domain"], r["image"], float(r["quality"])) for r in csv.DictReader(f)}
    new = not points.exists()
    regs = {n: _registry(args.out, n) for n in args.samples}
    largest = max(args.samples)
    work = []
    for domain in args.domains:
        _, rest = _split(domain)
        work += [(domain, p, q) for p in rest[: args.eval_images] for q in args.qualities]
    with open(points, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        for domain, path, q in tqdm(work, desc="domain bench", unit="img*rate"):
            if (domain, path.name, q) in done:
                continue
            img = load_image(Image.fromarray(bench_crop(domain, path).rgb))
            rows = []
            reg = regs[largest]
            t = time.perf_counter()
            plain = encode_report(img, model=args.model, quality=q, registry=reg)
            enc_s = time.perf_counter() - t
            rows.append(("plain", plain.bpp, plain.psnr, enc_s, median_decode_seconds(plain.data, reg)))
            for n in args.samples:
                dom = trained[domain][str(n)]["id"]
                t = time.perf_counter()
                res = encode_report(img, model=args.model, quality=q, registry=regs[n], domain=dom)
                enc_s = time.perf_counter() - t
                rows.append((f"domain-{n}", res.bpp, res.psnr, enc_s, median_decode_seconds(res.data, regs[n])))
            for method, dom in (("adapt", None), (f"adapt+domain-{largest}", trained[domain][str(largest)]["id"])):
                t = time.perf_counter()
                out = adaptive_encode(img, args.model, quality=q, config=args.adapt, registry=reg, domain=dom)
                enc_s = time.perf_counter() - t
                r = out.result
                rows.append((method, r.bpp, r.psnr, enc_s, median_decode_seconds(r.data, reg)))
            for method, bpp, psnr, enc_s, dec_s in rows:
                w.writerow(
                    {
                        "domain": domain,
                        "image": path.name,
                        "quality": q,
                        "method": method,
                        "bpp": f"{bpp:.5f}",
                        "psnr": f"{psnr:.4f}",
                        "encode_s": f"{enc_s:.3f}",
                        "decode_s": f"{dec_s:.4f}",
                    }
                )
            f.flush()
    return points


def auto_choice(args: argparse.Namespace, trained: dict) -> dict:
    """Share of second-half crops for which ``domain=auto`` picks the image's own set's adapter."""
    out: dict = {}
    for n in args.samples:
        reg = _registry(args.out, n)
        base = reg.get(args.model)
        level = base.level_for(args.auto_quality)
        for domain in args.domains:
            _, rest = _split(domain)
            own = trained[domain][str(n)]["id"]
            picks = []
            for path in rest[: args.auto_images]:
                img = load_image(Image.fromarray(bench_crop(domain, path).rgb))
                choice, _ = choose_domain(reg, base.name, img, level)
                picks.append(choice or "none")
            out.setdefault(domain, {})[str(n)] = {
                "own": sum(p == own for p in picks),
                "none": sum(p == "none" for p in picks),
                "images": len(picks),
                "picks": picks,
            }
    return out


def summarise(args: argparse.Namespace, points: Path, trained: dict, auto: dict) -> dict:
    with open(points, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["domain"] in args.domains]
    methods = ["plain"] + [f"domain-{n}" for n in args.samples] + ["adapt", f"adapt+domain-{max(args.samples)}"]
    summary: dict = {}
    for domain in args.domains:
        sel = [r for r in rows if r["domain"] == domain]
        if not sel:
            continue
        qualities = sorted({float(r["quality"]) for r in sel})
        curves = {}
        for m in methods:
            pts = [[r for r in sel if r["method"] == m and float(r["quality"]) == q] for q in qualities]
            pts = [p for p in pts if p]
            curves[m] = (
                [float(np.mean([float(r["bpp"]) for r in p])) for p in pts],
                [float(np.mean([float(r["psnr"]) for r in p])) for p in pts],
            )
        table = {}
        for m in methods:
            enc = [float(r["encode_s"]) for r in sel if r["method"] == m]
            dec = [float(r["decode_s"]) for r in sel if r["method"] == m]
            table[m] = {
                "bd_rate_vs_plain_pct": format_bd(bd_rate, *curves["plain"], *curves[m])
                if len(curves[m][0]) >= 2
                else "n/a",
                "encode_s": float(np.mean(enc)) if enc else None,
                "decode_s": float(np.mean(dec)) if dec else None,
            }
        summary[domain] = {
            "images": sorted({r["image"] for r in sel}),
            "methods": table,
            "trained": trained.get(domain, {}),
            "auto": auto.get(domain, {}),
        }
        print(f"\n== {domain} (eval: {len(summary[domain]['images'])} crops of the second half)")
        print(f"{'method':18s} {'BD-rate %':>10s} {'encode s':>9s} {'decode s':>9s}")
        for m, v in table.items():
            enc_s = f"{v['encode_s']:.2f}" if v["encode_s"] is not None else "-"
            dec_s = f"{v['decode_s']:.3f}" if v["decode_s"] is not None else "-"
            print(f"{m:18s} {v['bd_rate_vs_plain_pct']:>10s} {enc_s:>9s} {dec_s:>9s}")
        for n, t in trained.get(domain, {}).items():
            a = auto.get(domain, {}).get(n)
            pick = f"auto picks own adapter {a['own']}/{a['images']} (none {a['none']})" if a else ""
            print(
                f"  {n}-sample adapter: {t['files']} files, trained {t['train_s']:.0f} s, "
                f"validation gain {t['validation_gain_pct']:.1f}%; {pick}"
            )
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", nargs="+", default=list(OUT_OF_DOMAIN))
    ap.add_argument("--samples", type=int, nargs="+", default=[5, 25])
    ap.add_argument("--eval-images", type=int, default=2, help="first N files of the second half, bench-256 crops")
    ap.add_argument("--auto-images", type=int, default=8, help="second-half crops per set for the auto check")
    ap.add_argument("--auto-quality", type=float, default=3.0)
    ap.add_argument("--qualities", type=float, nargs="+", default=[1.0, 2.5, 4.0, 5.5])
    ap.add_argument("--model", default="default")
    ap.add_argument("--steps", type=int, default=600, help="stage-1 steps per adapter")
    ap.add_argument("--stage2-steps", type=int, default=150)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--adapt", default="fast", help="per-image adaptation preset")
    ap.add_argument("--out", type=Path, default=Path("results/domain_bench"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    reg = Registry(domains_dir=args.out / "unused")
    trained = train_all(args, reg)
    points = evaluate(args, trained)
    auto = auto_choice(args, trained)
    summary = summarise(args, points, trained, auto)
    summary[STAMP_KEY] = weights_stamp([args.model])
    summary["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwritten: {args.out}/points.csv, trained.json, summary.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
