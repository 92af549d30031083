"""Train the embedded default model (variable-rate gained mean-scale hyperprior) on CPU or GPU.

Data: every image in ``../shared/datasets/natural-train`` (BSDS300 + BSDS500 test), held in RAM
as uint8, random 256x256 crops with horizontal flips. Each sample of a batch draws its own rate
level, so every step trains several rates. Loss per sample: ``bpp + lambda * 255^2 * MSE``.

Resumable: ``--out DIR`` holds ``last.pt`` (model, optimisers, step, RNG), written atomically
every ``--ckpt-every`` steps and on Ctrl-C; rerunning the same command continues from it.
Progress: a tqdm bar, a ``log.csv`` of training loss, and a periodic evaluation on the Kodak
bench-256 crops (``eval.csv``: real rounding, estimated bpp, PSNR per level).

Example (what produced the shipped weights, see codec/zoo/weights/MODEL_CARD.md):
    python -m codec.training.train_default --out runs/default --steps 60000
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from codec.datasets import bench_images, datasets_root, list_images
from codec.models.gained import DEFAULT_LAMBDAS, GainedMeanScaleHyperprior


def load_training_images(folder: Path, min_side: int) -> list[torch.Tensor]:
    """All images of ``folder`` as uint8 CHW tensors (at least ``min_side`` on each side)."""
    images = []
    for path in tqdm(list_images(folder), desc="loading", leave=False):
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        if min(arr.shape[:2]) >= min_side:
            images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())
    return images


def random_batch(images: list[torch.Tensor], batch: int, crop: int, gen: random.Random) -> torch.Tensor:
    out = torch.empty(batch, 3, crop, crop, dtype=torch.uint8)
    for i in range(batch):
        img = images[gen.randrange(len(images))]
        _, h, w = img.shape
        y, x = gen.randrange(h - crop + 1), gen.randrange(w - crop + 1)
        patch = img[:, y : y + crop, x : x + crop]
        if gen.random() < 0.5:
            patch = patch.flip(-1)
        out[i] = patch
    return out.float().div_(255.0)


def rd_loss(model: GainedMeanScaleHyperprior, x: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample rate (bpp), MSE and RD loss, averaged over the batch."""
    out = model(x, q)
    pixels = x.shape[-1] * x.shape[-2]
    bits = sum((-torch.log2(lik)).flatten(1).sum(1) for lik in out["likelihoods"].values())
    bpp = bits / pixels
    mse = (out["x_hat"] - x).pow(2).flatten(1).mean(1)
    lam = model.lmbda(q)
    loss = bpp + lam * 255.0**2 * mse
    return {"loss": loss.mean(), "bpp": bpp.detach(), "mse": mse.detach()}


@torch.no_grad()
def evaluate(model: GainedMeanScaleHyperprior, crops: torch.Tensor) -> list[tuple[int, float, float]]:
    """(level, estimated bpp, PSNR) on the Kodak bench crops with real rounding."""
    model.eval()
    rows = []
    for level in range(model.levels):
        q = torch.full((crops.shape[0],), float(level))
        out = model(crops, q)
        pixels = crops.shape[-1] * crops.shape[-2]
        bits = sum((-torch.log2(lik)).flatten(1).sum(1) for lik in out["likelihoods"].values())
        x_hat = out["x_hat"].clamp(0, 1).mul(255).round()
        mse = (x_hat - crops.mul(255).round()).pow(2).flatten(1).mean(1)
        psnr = (10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))).mean().item()
        rows.append((level, (bits / pixels).mean().item(), psnr))
    model.train()
    return rows


def lr_at(step: int, base: float, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 2% of the base rate at ``total`` steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def save_atomic(obj: object, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/default"))
    ap.add_argument("--data", type=Path, default=None, help="training folder (default: natural-train)")
    ap.add_argument("--steps", type=int, default=60000, help="total steps of the schedule")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--N", type=int, default=48)
    ap.add_argument("--M", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--stop-after-minutes", type=float, default=0.0, help="leave cleanly after this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from exported weights (e.g. codec/zoo/weights/default.pt) when --out has no checkpoint",
    )
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    root = datasets_root()
    data_dir = args.data or (root / "natural-train" if root else None)
    if data_dir is None or not data_dir.is_dir():
        raise SystemExit("training data not found: pass --data or put ../shared/datasets beside the repo")
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "last.pt"

    model = GainedMeanScaleHyperprior(args.N, args.M, DEFAULT_LAMBDAS).to(device)
    aux_params = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    net_params = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    opt = torch.optim.Adam(net_params, lr=args.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    step, wall = 0, 0.0
    gen = random.Random(args.seed)
    torch.manual_seed(args.seed)
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        aux_opt.load_state_dict(state["aux_opt"])
        step, wall = state["step"], state.get("wall", 0.0)
        gen.setstate(state["py_rng"])
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed from {ckpt_path} at step {step} ({wall / 3600:.2f} h trained)")
    elif args.init is not None:
        shipped = torch.load(args.init, map_location=device, weights_only=True)
        sd = {k: (v.float() if v.is_floating_point() else v) for k, v in shipped["state_dict"].items()}
        model.load_state_dict(sd, strict=False)
        step, wall = int(shipped.get("step") or 0), float(shipped.get("train_seconds") or 0.0)
        print(f"initialised from {args.init} (step {step}); optimiser state starts fresh")

    images = load_training_images(data_dir, args.crop)
    kodak = torch.stack([torch.from_numpy(b.rgb).permute(2, 0, 1).float() / 255 for b in bench_images("kodak")]).to(
        device
    )
    print(f"{len(images)} training images from {data_dir}; device {device}; threads {torch.get_num_threads()}")

    def checkpoint() -> None:
        save_atomic(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "aux_opt": aux_opt.state_dict(),
                "step": step,
                "wall": wall,
                "py_rng": gen.getstate(),
                "torch_rng": torch.get_rng_state(),
                "config": {"N": args.N, "M": args.M, "lambdas": list(DEFAULT_LAMBDAS)},
                "args": vars(args) | {"out": str(args.out), "data": str(data_dir)},
            },
            ckpt_path,
        )

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    log_new = not (args.out / "log.csv").exists()
    log = open(args.out / "log.csv", "a", newline="")  # noqa: SIM115 (closed in finally)
    logw = csv.writer(log)
    if log_new:
        logw.writerow(["step", "wall_s", "lr", "loss", "bpp", "mse", "aux"])
    evf_new = not (args.out / "eval.csv").exists()
    evf = open(args.out / "eval.csv", "a", newline="")  # noqa: SIM115
    evw = csv.writer(evf)
    if evf_new:
        evw.writerow(["step", "wall_s", "level", "bpp_est", "psnr"])

    session_start = time.time()
    bar = tqdm(total=args.steps, initial=step, desc="train", dynamic_ncols=True, mininterval=5)
    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "aux": 0.0, "n": 0}
    try:
        while step < args.steps and not stop["now"]:
            t0 = time.time()
            lr = lr_at(step, args.lr, args.steps, args.warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            x = random_batch(images, args.batch, args.crop, gen).to(device)
            q = torch.tensor([float(gen.randrange(model.levels)) for _ in range(args.batch)], device=device)
            out = rd_loss(model, x, q)
            opt.zero_grad(set_to_none=True)
            if torch.isfinite(out["loss"]):
                out["loss"].backward()
                torch.nn.utils.clip_grad_norm_(net_params, 1.0)
                opt.step()
            aux = model.aux_loss()
            aux_opt.zero_grad(set_to_none=True)
            aux.backward()
            aux_opt.step()
            step += 1
            wall += time.time() - t0
            acc["loss"] += out["loss"].item()
            acc["bpp"] += out["bpp"].mean().item()
            acc["mse"] += out["mse"].mean().item()
            acc["aux"] += aux.item()
            acc["n"] += 1
            bar.update(1)
            if step % 50 == 0:
                n = acc["n"]
                logw.writerow(
                    [step, f"{wall:.1f}", f"{lr:.2e}"] + [f"{acc[k] / n:.5f}" for k in ("loss", "bpp", "mse", "aux")]
                )
                log.flush()
                bar.set_postfix(loss=f"{acc['loss'] / n:.3f}", bpp=f"{acc['bpp'] / n:.3f}")
                acc = dict.fromkeys(acc, 0.0) | {"n": 0}
            if step % args.ckpt_every == 0:
                checkpoint()
            if step % args.eval_every == 0:
                for level, bpp, psnr in evaluate(model, kodak):
                    evw.writerow([step, f"{wall:.1f}", level, f"{bpp:.4f}", f"{psnr:.3f}"])
                evf.flush()
            if args.stop_after_minutes and time.time() - session_start > args.stop_after_minutes * 60:
                break
    except KeyboardInterrupt:
        pass
    finally:
        checkpoint()
        bar.close()
        log.close()
        evf.close()
    print(f"stopped at step {step}; checkpoint {ckpt_path}")


if __name__ == "__main__":
    main()
