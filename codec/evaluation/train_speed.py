"""Training speed benchmark: seconds per step of the old (fp32) and the new (bf16 + channels_last) loop.

The new loop runs its last quarter in fp32 (``--fp32-tail``), so its mean speed-up is below the bf16 figure.

Both loops are timed in one process, interleaved round by round (so a busy machine slows both
alike), on the same random batches, each step a full ``Trainer.train_step`` (forward, backward,
both optimisers). Prints a table and writes JSON.

    python -m codec.evaluation.train_speed --widths 48 96 --steps 10 --out results/train_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import torch

from codec.models.gained import DEFAULT_LAMBDAS, GainedMeanScaleHyperprior
from codec.training.train_default import Trainer

#: variant -> (precision, channels_last, fp32 islands). "bf16+channels_last" is what training uses for all but
#: its fp32 tail (only the rate terms fp32); "+fp32-islands" also keeps GDN and each transform's last layer in
#: fp32 (GainedMeanScaleHyperprior.mixed), measured because it halves bf16's RD drift (precision_ab)
VARIANTS = {
    "fp32": ("fp32", False, False),
    "bf16+channels_last": ("bf16", True, False),
    "bf16+channels_last+fp32-islands": ("bf16", True, True),
}


def _trainer(N: int, M: int, channels_last: bool, islands: bool) -> Trainer:
    torch.manual_seed(0)
    model = GainedMeanScaleHyperprior(N, M, DEFAULT_LAMBDAS, Nh=48)
    model.fp32_islands = islands
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return Trainer.create(model, 1e-4, 0)


def measure(widths: list[int], M: int, batch: int, crop: int, steps: int, warmup: int) -> list[dict]:
    gen = random.Random(0)
    trainers = {(N, v): _trainer(N, M, VARIANTS[v][1], VARIANTS[v][2]) for N in widths for v in VARIANTS}
    times: dict[tuple[int, str], list[float]] = {k: [] for k in trainers}
    for i in range(warmup + steps):
        x = torch.rand(batch, 3, crop, crop, generator=torch.Generator().manual_seed(i))
        q = torch.tensor([float(gen.randrange(len(DEFAULT_LAMBDAS))) for _ in range(batch)])
        for (N, v), tr in trainers.items():
            precision, cl, _ = VARIANTS[v]
            xin = x.contiguous(memory_format=torch.channels_last) if cl else x
            t0 = time.perf_counter()
            tr.train_step(xin, q, 1e-4, precision)
            if i >= warmup:
                times[(N, v)].append(time.perf_counter() - t0)
    rows = []
    for (N, v), ts in times.items():
        med = statistics.median(ts)
        rows.append({"N": N, "M": M, "variant": v, "median_s_per_step": med, "steps_per_s": 1 / med, "samples": ts})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[48])
    ap.add_argument("--M", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("results/train_speed.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = measure(args.widths, args.M, args.batch, args.crop, args.steps, args.warmup)
    base = {r["N"]: r["median_s_per_step"] for r in rows if r["variant"] == "fp32"}
    print(f"batch {args.batch} x {args.crop}^2, {torch.get_num_threads()} threads, median of {args.steps} steps")
    print("| N | variant | s/step | steps/s | speed-up vs fp32 |\n|---:|---|---:|---:|---:|")
    for r in rows:
        speedup = base[r["N"]] / r["median_s_per_step"]
        r["speedup_vs_fp32"] = speedup
        print(f"| {r['N']} | {r['variant']} | {r['median_s_per_step']:.3f} | {r['steps_per_s']:.2f} | {speedup:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor()}
    args.out.write_text(
        json.dumps({"config": vars(args) | {"out": str(args.out)}, "machine": meta, "rows": rows}, indent=1)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
