"""Train a checkpoint of a CompressAI zoo architecture at one lambda, for ``udic models add``.

Why: without internet no official zoo weights exist here, yet the adaptive encode of the zoo
family (``mbt2018-mean``, ``bmshj2018-hyperprior``) must be measured on a *trained* model, through
the same path a user's checkpoint takes. A small one (``--N 64 --M 96``) trains in under an hour
on two cores; it is far from the official weights and only shows what adaptation adds to it.

Data, crops and the RD loss (``bpp + lambda * 255^2 * MSE``) are the default model's
(``codec.training.train_default``); one lambda per checkpoint, as CompressAI trains them, so a
rate-distortion curve takes one checkpoint per rate. fp32 throughout: CompressAI's entropy
models compute their likelihoods in the input's precision, and bf16 rates would be wrong.

Resumable: ``--out DIR`` holds ``last.pt`` (model, optimisers, step, wall time), written every
``--ckpt-every`` steps and on SIGTERM/Ctrl-C; the same command continues from it. At the end it
writes ``DIR/<arch>-<lambda>.pth``, a plain state dict that ``udic models add NAME FILE --arch
ARCH --lambda LAMBDA`` checks and keeps.

    python -m codec.training.train_zoo --arch mbt2018-mean --lmbda 0.013 --N 64 --M 96 \\
        --minutes 40 --out runs/mbt-0.013
"""

from __future__ import annotations

import argparse
import pickle
import random
import signal
import time
from pathlib import Path

import torch
from compressai.models import MeanScaleHyperprior, ScaleHyperprior
from tqdm import tqdm

from codec.datasets import PHOTO_FOLDERS, datasets_root
from codec.sampling import load_training_images, random_batch
from codec.training.steps import lr_at, optimiser_step, save_atomic

ARCHS: dict[str, type[ScaleHyperprior]] = {"mbt2018-mean": MeanScaleHyperprior, "bmshj2018-hyperprior": ScaleHyperprior}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="mbt2018-mean")
    ap.add_argument("--lmbda", type=float, required=True, help="the RD trade-off (CompressAI's: 0.0018 .. 0.0483)")
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--M", type=int, default=96)
    ap.add_argument("--out", type=Path, required=True, help="run folder (last.pt, and the exported .pth)")
    ap.add_argument("--data", type=Path, nargs="+", default=None, help="training folders (default: the photos)")
    ap.add_argument("--steps", type=int, default=20000, help="schedule length in steps (without --minutes)")
    ap.add_argument("--minutes", type=float, default=0.0, help="schedule over this much training time instead")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--init", type=Path, help="start from these exported weights (a neighbouring lambda's .pth): fine-tune a family"
    )
    return ap


def rd_loss(net: ScaleHyperprior, x: torch.Tensor, lmbda: float) -> dict[str, torch.Tensor]:
    """CompressAI's training loss: estimated bits per pixel plus ``lambda * 255^2 * MSE``."""
    out = net(x)
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = torch.stack([-torch.log2(lik).sum() for lik in out["likelihoods"].values()]).sum() / pixels
    mse = torch.nn.functional.mse_loss(out["x_hat"], x)
    return {"loss": bpp + lmbda * 255**2 * mse, "bpp": bpp, "mse": mse}


class ZooTrainer:
    """The network, its two optimisers (the entropy bottleneck's quantiles train apart) and counters."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.net = ARCHS[args.arch](args.N, args.M)
        aux = [p for n, p in self.net.named_parameters() if n.endswith("quantiles")]
        self.params = [p for n, p in self.net.named_parameters() if not n.endswith("quantiles")]
        self.opt = torch.optim.Adam(self.params, lr=args.lr)
        self.aux_opt = torch.optim.Adam(aux, lr=1e-3)
        self.gen = random.Random(args.seed)
        self.step, self.wall = 0, 0.0

    def state(self, args: argparse.Namespace) -> dict:
        keep = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        return {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "aux_opt": self.aux_opt.state_dict(),
            "step": self.step,
            "wall": self.wall,
            "py_rng": self.gen.getstate(),
            "args": keep,
        }

    def restore(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.aux_opt.load_state_dict(state["aux_opt"])
        self.step, self.wall = state["step"], state["wall"]
        self.gen.setstate(state["py_rng"])

    def progress(self, args: argparse.Namespace) -> float:
        return self.wall / (args.minutes * 60) if args.minutes else self.step / max(1, args.steps)

    def train_step(self, x: torch.Tensor, lmbda: float, lr: float) -> dict[str, float]:
        out = rd_loss(self.net, x, lmbda)
        optimiser_step(out["loss"], self.net, self.params, (self.opt, self.aux_opt), lr)
        return {"loss": out["loss"].item(), "bpp": out["bpp"].item(), "mse": out["mse"].item()}


def export(trainer: ZooTrainer, args: argparse.Namespace) -> Path:
    """The plain state dict ``udic models add`` takes (entropy tables built, as CompressAI ships them)."""
    trainer.net.update(force=True)
    path = args.out / f"{args.arch}-{args.lmbda:g}.pth"
    save_atomic(trainer.net.state_dict(), path)
    return path


def run(trainer: ZooTrainer, args: argparse.Namespace, images: list[torch.Tensor]) -> bool:
    """Train until the schedule ends (True) or SIGTERM / Ctrl-C (False); checkpoint either way."""
    ckpt, stop = args.out / "last.pt", {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    bar = tqdm(total=1000, desc=f"{args.arch} lambda={args.lmbda:g}", dynamic_ncols=True, mininterval=5)
    try:
        while trainer.progress(args) < 1.0 and not stop["now"]:
            t0 = time.time()
            lr = lr_at(trainer.progress(args), trainer.step, args.lr, args.warmup)
            figures = trainer.train_step(random_batch(images, args.batch, args.crop, trainer.gen), args.lmbda, lr)
            trainer.step += 1
            trainer.wall += time.time() - t0
            bar.n = min(1000, int(1000 * trainer.progress(args)))
            if trainer.step % 50 == 0:
                shown: dict[str, object] = {"step": trainer.step, **{k: f"{v:.4f}" for k, v in figures.items()}}
                bar.set_postfix(shown, refresh=True)
            if trainer.step % args.ckpt_every == 0:
                save_atomic(trainer.state(args), ckpt)
    except KeyboardInterrupt:
        stop["now"] = True
    finally:
        save_atomic(trainer.state(args), ckpt)
        bar.close()
    return not stop["now"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = datasets_root()
    folders = args.data or ([root / f for f in PHOTO_FOLDERS] if root else [])
    if not folders or not all(Path(f).is_dir() for f in folders):
        raise SystemExit("train_zoo: error: training data not found (pass --data, or put ../shared beside the repo)")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    trainer = ZooTrainer(args)
    if (args.out / "last.pt").exists():
        trainer.restore(torch.load(args.out / "last.pt", map_location="cpu", weights_only=False))
        print(f"resumed at step {trainer.step} ({trainer.wall / 60:.1f} min trained)")
    elif args.init is not None:
        # strict: a checkpoint of another architecture or width must not half-load
        try:
            trainer.net.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError, pickle.UnpicklingError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SystemExit(
                f"train_zoo: error: --init {args.init} is not {args.arch} N={args.N} M={args.M} weights ({first})"
            ) from None
        print(f"weights from {args.init} (optimisers start fresh)")
    images = load_training_images(folders, args.crop)
    if run(trainer, args, images):
        path = export(trainer, args)
        add = f"udic models add NAME {path} --arch {args.arch} --lambda {args.lmbda:g}"
        print(f"step {trainer.step}; weights {path}; keep them with: {add}")
    else:
        print(f"stopped at step {trainer.step}; run the same command to continue")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
