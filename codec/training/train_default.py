"""Train the embedded default model (variable-rate gained mean-scale hyperprior) on CPU or GPU.

Data: the training folders of ``../shared/datasets``, by default the mix the shipped universal base
was trained on (the photos of ``natural-train`` and ``natural-train-extra`` and the four
``graphics-train`` folders; never an evaluation folder), held in RAM as uint8, random crops with
horizontal flips. Each sample of a batch draws its own rate level, so every step trains several
rates. Loss per sample: ``bpp + lambda*255^2*MSE``.

Speed: bf16 autocast with channels_last where the device computes bf16 natively (``--precision auto``,
the default: on a CPU without avx512_bf16 or AMX, emulated bf16 is many times slower, so fp32 there;
the rate terms stay fp32, see ``GainedMeanScaleHyperprior.forward``), and the last ``--fp32-tail``
(25 %) of the schedule in fp32: at equal steps bf16 ends measurably worse than fp32
(``codec.evaluation.precision_ab``), so the low learning-rate end, where that drift would stay, runs
in fp32. ``--precision fp32`` is the old loop throughout. ``python -m codec.evaluation.train_speed``
measures the variants side by side.

Schedule: linear warm-up, then a cosine decay to 2 % of ``--lr``, over ``--steps`` steps or, with
``--minutes``, over that much *training* time: a run that must end with the session still ends with
a decayed learning rate however busy the machine is.

Resumable: ``--out DIR`` holds ``last.pt`` (model, optimisers, step, RNG, schedule), written
atomically every ``--ckpt-every`` steps, on SIGTERM and on Ctrl-C; rerunning the same command
continues from it. ``--init`` starts a new schedule from exported weights (optimiser state starts
fresh) or from an ended run's ``last.pt`` (its optimiser state kept);
``--widen N`` widens them first (``codec.training.widen``). Progress: a tqdm bar, ``log.csv`` of
the training loss, and a periodic evaluation on the Kodak bench-256 crops (``eval.csv``), skipped
when neither the datasets nor the pack hold them.

``--pack FILE`` trains on the crops of a pack (``codec.training.pack``) instead of the photo folders:
a GPU machine has no ``../shared/datasets``. A crop as large as the packed crops is the whole crop.

    python -m codec.training.train_default --out runs/default --init codec/zoo/weights/default.pt \\
        --minutes 120
"""

from __future__ import annotations

import argparse
import csv
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from codec.datasets import DEFAULT_TRAINING_FOLDERS, datasets_root
from codec.determinism import bf16_is_fast
from codec.losses import autocast_for, rd_loss
from codec.models.gained import DEFAULT_LAMBDAS, GainedMeanScaleHyperprior
from codec.sampling import random_batch
from codec.training.session import session_record, training_images
from codec.training.steps import OPTIMISERS, lr_at, make_optimiser, optimiser_step, save_atomic
from codec.training.widen import widen


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/default"))
    ap.add_argument("--data", type=Path, nargs="+", default=None, help="training folders (default: the photos)")
    ap.add_argument("--pack", type=Path, default=None, help="train on the crops of this pack instead of --data")
    ap.add_argument("--steps", type=int, default=60000, help="steps of the schedule from its start")
    ap.add_argument("--minutes", type=float, default=0.0, help="schedule over this much training time instead")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--N", type=int, default=48)
    ap.add_argument("--M", type=int, default=128)
    ap.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="auto: bf16 where the device computes it natively (CUDA with bf16, an avx512_bf16/AMX CPU), else fp32",
    )
    ap.add_argument("--optimizer", choices=OPTIMISERS, default="adam", help="a resumed run keeps its own")
    ap.add_argument(
        "--fp32-tail", type=float, default=0.25, help="the last fraction of the schedule runs in fp32 (bf16 drifts)"
    )
    ap.add_argument("--fp32-islands", action="store_true", help="bf16 with GDN and last layers in fp32 (slower)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--stop-after-minutes", type=float, default=0.0, help="leave cleanly after this wall time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", type=Path, default=None, help="exported weights or a run's last.pt: new schedule")
    ap.add_argument("--widen", type=int, default=0, help="with --init: widen g_a/g_s to this N first")
    return ap


@dataclass
class Trainer:
    """The model, its optimisers and every counter a resumed run needs."""

    model: GainedMeanScaleHyperprior
    opt: torch.optim.Optimizer
    aux_opt: torch.optim.Optimizer
    net_params: list[torch.nn.Parameter]
    gen: random.Random
    step: int = 0
    wall: float = 0.0  # training seconds, over every session of this model
    schedule: dict = field(default_factory=dict)  # where this run's schedule began: step, wall
    history: list[dict] = field(default_factory=list)  # earlier sessions of this model (for the model card)
    session: dict = field(default_factory=dict)  # this process's session: device, data, steps, seconds

    @classmethod
    def create(cls, model: GainedMeanScaleHyperprior, lr: float, seed: int, optimiser: str = "adam") -> Trainer:
        aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
        net = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
        opt = make_optimiser(optimiser, net, lr)
        return cls(model, opt, torch.optim.Adam(aux, lr=1e-3), net, random.Random(seed))

    def progress(self, args: argparse.Namespace) -> float:
        """How far through this run's schedule (0..1): by training time with --minutes, else by steps
        (both counted from where the schedule began, so ``--init`` weights at step N get ``--steps``)."""
        if args.minutes:
            return (self.wall - self.schedule.get("wall", 0.0)) / (args.minutes * 60)
        return (self.step - self.schedule.get("step", 0)) / max(1, args.steps)

    def state(self, args: argparse.Namespace) -> dict:
        return {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "aux_opt": self.aux_opt.state_dict(),
            "step": self.step,
            "wall": self.wall,
            "schedule": self.schedule,
            "py_rng": self.gen.getstate(),
            "torch_rng": torch.get_rng_state(),
            "config": self.model.config(),
            "history": [*self.history, self.session | {"end_step": self.step, "end_wall": self.wall}],
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.aux_opt.load_state_dict(state["aux_opt"])
        self.step, self.wall = state["step"], state.get("wall", 0.0)
        self.schedule = state.get("schedule") or {"step": 0, "wall": 0.0}
        self.history = list(state.get("history") or [])
        self.gen.setstate(state["py_rng"])
        torch.set_rng_state(state["torch_rng"])

    def train_step(self, x: torch.Tensor, q: torch.Tensor, lr: float, precision: str) -> dict[str, float]:
        out = rd_loss(self.model, x, q, precision)
        aux = optimiser_step(out["loss"], self.model, self.net_params, (self.opt, self.aux_opt), lr)
        return {
            "loss": out["loss"].item(),
            "bpp": out["bpp"].mean().item(),
            "mse": out["mse"].mean().item(),
            "aux": aux.item(),
        }


def build_model(args: argparse.Namespace, device: torch.device) -> tuple[GainedMeanScaleHyperprior, dict]:
    """A fresh model, or the ``--init`` weights (widened with ``--widen``), and where that left off."""
    if args.init is None:
        return GainedMeanScaleHyperprior(args.N, args.M, DEFAULT_LAMBDAS), {}
    if not args.init.is_file():
        raise SystemExit(f"train_default: error: --init {args.init} is not a file")
    shipped = torch.load(args.init, map_location="cpu", weights_only=True)
    model = GainedMeanScaleHyperprior.from_config(shipped["config"])
    # Bounds (likelihood floors, GDN pedestals, the scale bound) are constants of the architecture;
    # an fp16 file holds them rounded (the 1e-9 floors as 0), so the fresh model's are kept.
    # The lambdas too: the file's config holds them exactly, its fp16 buffer rounded.
    keep = {k: v for k, v in shipped["state_dict"].items() if "bound" not in k and k != "lambdas"}
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in keep.items()}
    model.load_state_dict(sd, strict=False)
    if args.widen and args.widen < model.N:
        raise SystemExit(f"train_default: error: --widen {args.widen} is narrower than N={model.N} of {args.init}")
    if args.widen:
        model = widen(model, args.widen, seed=args.seed)
    step, wall = int(shipped.get("step") or 0), float(shipped.get("train_seconds") or 0.0)
    # files exported before histories were kept: one entry for all their training
    history = shipped.get("history") or [{"device": "CPU (2 cores)", "end_step": step, "end_wall": wall}]
    if args.widen:
        history = [*history, {"event": f"widened g_a/g_s to N={args.widen}", "end_step": step, "end_wall": wall}]
    return model, {"step": step, "wall": wall, "history": history}


@torch.no_grad()
def evaluate(model: GainedMeanScaleHyperprior, crops: torch.Tensor, precision: str) -> list[tuple[int, float, float]]:
    """(level, estimated bpp, PSNR) on the Kodak bench crops with real rounding."""
    model.eval()
    rows = []
    for level in range(model.levels):
        q = torch.full((crops.shape[0],), float(level), device=crops.device)
        with autocast_for(crops.device, precision):
            out = model(crops, q)
        pixels = crops.shape[-1] * crops.shape[-2]
        bits = torch.stack([(-torch.log2(lik.float())).flatten(1).sum(1) for lik in out["likelihoods"].values()]).sum(0)
        x_hat = out["x_hat"].float().clamp(0, 1).mul(255).round()
        mse = (x_hat - crops.mul(255).round()).pow(2).flatten(1).mean(1)
        psnr = (10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))).mean().item()
        rows.append((level, (bits / pixels).mean().item(), psnr))
    model.train()
    return rows


class RunLog:
    """``log.csv`` (training loss every 50 steps) and ``eval.csv`` (Kodak crops), appended across resumes."""

    def __init__(self, out: Path) -> None:
        self.log, self.logw = self._open(out / "log.csv", ["step", "wall_s", "lr", "loss", "bpp", "mse", "aux"])
        self.evf, self.evw = self._open(out / "eval.csv", ["step", "wall_s", "level", "bpp_est", "psnr"])
        self.acc: dict[str, float] = {}
        self.n = 0

    @staticmethod
    def _open(path: Path, header: list[str]) -> tuple:
        new = not path.exists()
        f = open(path, "a", newline="")  # noqa: SIM115 (closed in close())
        w = csv.writer(f)
        if new:
            w.writerow(header)
        return f, w

    def add(self, figures: dict[str, float]) -> None:
        for k, v in figures.items():
            self.acc[k] = self.acc.get(k, 0.0) + v
        self.n += 1

    def flush_training(self, step: int, wall: float, lr: float) -> dict[str, str]:
        means = {k: f"{v / max(1, self.n):.5f}" for k, v in self.acc.items()}
        self.logw.writerow(
            [step, f"{wall:.1f}", f"{lr:.2e}"] + [means.get(k, "") for k in ("loss", "bpp", "mse", "aux")]
        )
        self.log.flush()
        self.acc, self.n = {}, 0
        return means

    def write_eval(self, step: int, wall: float, rows: list[tuple[int, float, float]]) -> None:
        for level, bpp, psnr in rows:
            self.evw.writerow([step, f"{wall:.1f}", level, f"{bpp:.4f}", f"{psnr:.3f}"])
        self.evf.flush()

    def close(self) -> None:
        self.log.close()
        self.evf.close()


def run(
    trainer: Trainer,
    args: argparse.Namespace,
    images: list[torch.Tensor],
    kodak: torch.Tensor | None,
    device: torch.device | None = None,
) -> None:
    """The training loop: until the schedule ends, SIGTERM, Ctrl-C or --stop-after-minutes."""
    device = device or (kodak.device if kodak is not None else torch.device("cpu"))
    ckpt = args.out / "last.pt"
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    log, started = RunLog(args.out), time.time()
    bar = tqdm(total=1000, desc="train (per mille of schedule)", dynamic_ncols=True, mininterval=5)
    try:
        while trainer.progress(args) < 1.0 and not stop["now"]:
            t0 = time.time()
            lr = lr_at(trainer.progress(args), trainer.step - trainer.schedule["step"], args.lr, args.warmup)
            x = random_batch(images, args.batch, args.crop, trainer.gen).to(device)
            if args.precision == "bf16":
                x = x.contiguous(memory_format=torch.channels_last)
            q = torch.tensor(
                [float(trainer.gen.randrange(trainer.model.levels)) for _ in range(args.batch)], device=device
            )
            precision = "fp32" if trainer.progress(args) >= 1.0 - args.fp32_tail else args.precision
            log.add(trainer.train_step(x, q, lr, precision))
            trainer.step += 1
            trainer.wall += time.time() - t0
            bar.n = min(1000, int(1000 * trainer.progress(args)))
            if trainer.step % 50 == 0:
                means = log.flush_training(trainer.step, trainer.wall, lr)
                bar.set_postfix(step=trainer.step, loss=means.get("loss"), bpp=means.get("bpp"), refresh=False)
                bar.refresh()
            if trainer.step % args.ckpt_every == 0:
                save_atomic(trainer.state(args), ckpt)
            if kodak is not None and trainer.step % args.eval_every == 0:
                log.write_eval(trainer.step, trainer.wall, evaluate(trainer.model, kodak, "fp32"))
            if args.stop_after_minutes and time.time() - started > args.stop_after_minutes * 60:
                break
    except KeyboardInterrupt:
        pass
    finally:
        save_atomic(trainer.state(args), ckpt)
        bar.close()
        log.close()
    print(f"stopped at step {trainer.step}; checkpoint {ckpt}")


def resolve_precision(asked: str, device: torch.device) -> str:
    """The training precision for ``--precision`` on ``device``.

    bf16 autocast pays only where the hardware computes bf16 natively: on a CPU without it (AVX2,
    no avx512_bf16) torch emulates it, and one N=96 step on one thread took 16-17 s
    (session 14). So ``auto`` asks :func:`codec.determinism.bf16_is_fast`, as the adaptive encode does;
    an explicit ``bf16`` is kept, with a warning where it will be slow.
    """
    fast = bf16_is_fast(device)
    if asked == "auto":
        return "bf16" if fast else "fp32"
    if asked == "bf16" and not fast:
        print(f"warning: {device.type} has no native bf16 here; bf16 training will be many times slower than fp32")
    return asked


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.precision = resolve_precision(args.precision, device)
    root = datasets_root()
    folders = args.data or ([root / f for f in DEFAULT_TRAINING_FOLDERS] if root and not args.pack else [])
    if args.pack is None and (not folders or not all(f.is_dir() for f in folders)):
        raise SystemExit("training data not found: pass --data or --pack, or put ../shared/datasets beside the repo")
    args.data = folders
    args.out.mkdir(parents=True, exist_ok=True)
    trainer = load_trainer(args, device)
    trainer.session = session_record(args, device, trainer)
    trainer.model.to(device)
    if args.precision == "bf16":
        trainer.model.to(memory_format=torch.channels_last)
    trainer.model.fp32_islands = args.fp32_islands
    _move_optimizer_state(trainer, device)
    images, kodak = training_images(args, folders)
    print(
        f"{len(images)} training images from {args.pack or ', '.join(map(str, folders))}; device {device}; "
        f"threads {torch.get_num_threads()}; {trainer.model.config()}; {args.precision}; {args.optimizer}"
    )
    if kodak is None:
        print("no Kodak bench crops (no datasets folder, none in the pack): evaluation skipped")
    run(trainer, args, images, None if kodak is None else kodak.to(device), device)


def load_trainer(args: argparse.Namespace, device: torch.device) -> Trainer:
    """Where a run starts: its own ``last.pt`` (resumed on its schedule, with its optimiser), else
    ``--init``: a checkpoint of an ended run (model and optimiser state kept when ``--optimizer``
    matches, on a new schedule) or exported weights (optimiser state starts fresh), else nothing.

    Why a checkpoint: it keeps the fp32 weights and the optimiser's state (SOAP's preconditioners).
    It does not spare Adam the dip of a new schedule at lr 1e-4: kept moments were 1.7 % worse on the
    Kodak crops after 15 minutes against fresh ones' 5.7 %, but still 2.6 % worse after 52 minutes
    (session 11, docs/bench/optimiser_ab.json)."""
    ckpt = args.out / "last.pt"
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        args.optimizer = state.get("args", {}).get("optimizer", "adam")
        trainer = Trainer.create(_model_of(state), args.lr, args.seed, args.optimizer)
        trainer.restore(state)
        print(f"resumed from {ckpt} at step {trainer.step} ({trainer.wall / 3600:.2f} h trained)")
        return trainer
    state = _checkpoint_at(args.init)
    if state is not None:
        if args.widen:
            raise SystemExit(f"train_default: error: --widen needs exported weights, not the checkpoint {args.init}")
        trainer = Trainer.create(_model_of(state), args.lr, args.seed, args.optimizer)
        same = state.get("args", {}).get("optimizer", "adam") == args.optimizer
        trainer.restore(state if same else {**state, "opt": trainer.opt.state_dict()})
        trainer.gen = random.Random(args.seed)
        print(f"continuing {args.init} at step {trainer.step}, {'with' if same else 'without'} its optimiser state")
    else:
        model, start = build_model(args, device)
        trainer = Trainer.create(model, args.lr, args.seed, args.optimizer)
        trainer.step, trainer.wall = start.get("step", 0), start.get("wall", 0.0)
        trainer.history = start.get("history", [])
    trainer.schedule = {"step": trainer.step, "wall": trainer.wall}
    torch.manual_seed(args.seed)
    return trainer


def _model_of(state: dict) -> GainedMeanScaleHyperprior:
    return GainedMeanScaleHyperprior.from_config(state["config"])


def _checkpoint_at(path: Path | None) -> dict | None:
    """The trainer's checkpoint (model and optimiser state) at ``path``; None for exported weights.
    Loaded as a full pickle, as resuming loads ``last.pt`` (it holds paths and RNG states): pass
    ``--init`` only files your own runs wrote."""
    if path is None or not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state if isinstance(state, dict) and "opt" in state else None


def _move_optimizer_state(trainer: Trainer, device: torch.device) -> None:
    for opt in (trainer.opt, trainer.aux_opt):
        for st in opt.state.values():
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and k != "step":
                    st[k] = v.to(device)
                elif isinstance(v, list):  # SOAP: one preconditioner (and basis) per dimension
                    st[k] = [t.to(device) if isinstance(t, torch.Tensor) else t for t in v]


if __name__ == "__main__":
    main()
