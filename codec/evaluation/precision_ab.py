"""Does bf16 training lose anything? An A/B at equal steps: fp32 against bf16 + channels_last.

Arms: ``fp32``; ``bf16`` (autocast + channels_last, only the rate terms in fp32: what the bulk of
training uses); ``bf16-islands`` (also GDN and each transform's last layer in fp32). All arms start
from the same weights, see the same batches and levels in the same order, use the same learning
rate, and are evaluated the same way afterwards (fp32, real rounding, the Kodak bench-256 crops,
every trained level). The figure that matters is the difference of each arm's mean RD loss on those
crops to the fp32 arm's, next to how much the fp32 arm moved from the start.

    python -m codec.evaluation.precision_ab --init codec/zoo/weights/default.pt --steps 800 \\
        --out results/precision_ab.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from codec.datasets import bench_images, datasets_root
from codec.losses import rd_loss
from codec.models.gained import GainedMeanScaleHyperprior
from codec.sampling import load_training_images, random_batch
from codec.training.train_default import Trainer, build_model, build_parser


@torch.no_grad()
def kodak_rd(model: GainedMeanScaleHyperprior, crops: torch.Tensor) -> dict[str, float]:
    """Mean RD loss, bpp and PSNR over the crops and every trained level, fp32, eval mode."""
    model.eval()
    loss, bpp, psnr = 0.0, 0.0, 0.0
    for level in range(model.levels):
        q = torch.full((crops.shape[0],), float(level))
        out = rd_loss(model, crops, q, "fp32")
        loss += out["loss"].item()
        bpp += out["bpp"].mean().item()
        psnr += (10 * torch.log10(1.0 / out["mse"].clamp_min(1e-12))).mean().item()
    model.train()
    n = model.levels
    return {"rd_loss": loss / n, "bpp": bpp / n, "psnr": psnr / n}


#: arm -> (precision, fp32 islands): "bf16" is what training uses (rate terms fp32 only), "bf16-islands" also
#: keeps GDN and each transform's last layer in fp32
ARMS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "bf16-islands": ("bf16", True)}


def run_arm(
    init: Path, arm: str, images: list[torch.Tensor], steps: int, lr: float, seed: int
) -> tuple[GainedMeanScaleHyperprior, float]:
    precision, islands = ARMS[arm]
    model, _ = build_model(build_parser().parse_args(["--init", str(init)]), torch.device("cpu"))
    model.fp32_islands = islands
    if precision == "bf16":
        model.to(memory_format=torch.channels_last)
    trainer = Trainer.create(model, lr, seed)
    torch.manual_seed(seed)
    gen = random.Random(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        x = random_batch(images, 4, 256, gen)
        if precision == "bf16":
            x = x.contiguous(memory_format=torch.channels_last)
        q = torch.tensor([float(gen.randrange(model.levels)) for _ in range(4)])
        trainer.train_step(x, q, lr, precision)
    return model.to(memory_format=torch.contiguous_format), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", type=Path, default=Path("codec/zoo/weights/default.pt"))
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    ap.add_argument("--out", type=Path, default=Path("results/precision_ab.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = datasets_root()
    if root is None:
        raise SystemExit("../shared/datasets is not on this machine")
    images = load_training_images([root / "natural-train", root / "natural-train-extra"], 256)
    crops = torch.stack([torch.from_numpy(b.rgb).permute(2, 0, 1).float() / 255 for b in bench_images("kodak")])
    start, _ = build_model(build_parser().parse_args(["--init", str(args.init)]), torch.device("cpu"))
    result: dict[str, object] = {"config": vars(args) | {"init": str(args.init), "out": str(args.out)}}
    result["start"] = kodak_rd(start, crops)
    for arm in args.arms:
        model, seconds = run_arm(args.init, arm, images, args.steps, args.lr, args.seed)
        result[arm] = kodak_rd(model, crops) | {"train_s": seconds}
    fp32 = result.get("fp32")
    for arm in args.arms:
        here = result[arm]
        if isinstance(fp32, dict) and isinstance(here, dict) and arm != "fp32":
            result[f"{arm}_minus_fp32_rd_loss_pct"] = 100 * (here["rd_loss"] / fp32["rd_loss"] - 1)
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
