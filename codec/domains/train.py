"""Training a domain adapter from a handful of images (seed 004's two stages).

Stage 1 trains every adapter jointly for ``bpp + lambda*255^2*MSE`` with the base frozen (noise
for the rate, straight-through rounding for the decoder, each sample at a random rate level).
Stage 2 fine-tunes only the adapter of the last synthesis stack for distortion with hard rounding.
The samples are split 4:1 into training and validation. As in 004, the validation images select
the adapters: their RD cost is checked ``validations`` times during stage 1 and after stage 2, and
the best state is kept, starting from the identity (so a stored adapter is never worse than the
base model on them; with very few samples that floor matters: without it, a 5-sample line-art
adapter came out 128% worse on its held-out image).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from codec.adaptation.loop import Schedule, optimise
from codec.adaptation.rate import hard_round
from codec.datasets import most_detailed_window
from codec.domains.cost import rd_cost
from codec.domains.modules import ConvAdapter, adapter_parameters, adapter_state, attach
from codec.imageio import CodecImage
from codec.losses import rd_loss
from codec.models.gained import GainedMeanScaleHyperprior, ste_round
from codec.progress import ProgressCallback, ProgressEvent, no_progress
from codec.sampling import random_batch

VAL_CROP = 384  # validation images are cut to this (most detailed window): bounded cost per check


@dataclass
class DomainTraining:
    decoder: dict[str, torch.Tensor]
    encoder: dict[str, torch.Tensor]
    rank: int
    gain_pct: float  # mean RD-cost saving on the validation images (hard rounding, estimated bits); >= 0
    n_train: int
    n_val: int
    steps: tuple[int, int]
    seconds: float


def _crop_source(img: CodecImage, crop: int) -> torch.Tensor:
    """A training image as ``random_batch`` takes it (uint8 CHW); smaller ones edge-padded to one crop."""
    rgb = img.rgb
    h, w = rgb.shape[:2]
    if h < crop or w < crop:  # the same values as replicate padding of the float image
        rgb = np.pad(rgb, ((0, max(0, crop - h)), (0, max(0, crop - w)), (0, 0)), mode="edge")
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


@torch.no_grad()
class _Selection:
    """Validation-based model selection (seed 004): the adapter state with the best mean RD-cost
    saving on the validation images, starting from the identity, so the result is never worse than
    the base model on them."""

    def __init__(self, net: GainedMeanScaleHyperprior, base: GainedMeanScaleHyperprior, val: list[torch.Tensor]):
        self.net, self.val = net, val
        self.names = [n for n, p in net.named_parameters() if p.requires_grad]
        base.eval()
        self.levels = (0.0, (base.levels - 1) / 2, float(base.levels - 1))
        self.before = [[rd_cost(base, x, lv) for lv in self.levels] for x in val]
        self.best_gain, self.best_state = 0.0, self.snapshot()  # the identity adapters

    def gain(self) -> float:
        """Mean RD-cost saving (%) of the current state on the validation images, all three levels."""
        gains = [
            100.0 * (1.0 - rd_cost(self.net, x, lv) / b)
            for x, row in zip(self.val, self.before, strict=True)
            for lv, b in zip(self.levels, row, strict=True)
        ]
        self.net.train()
        return float(np.mean(gains))

    def snapshot(self) -> dict[str, torch.Tensor]:
        params = dict(self.net.named_parameters())
        return {n: params[n].detach().clone() for n in self.names}

    def consider(self) -> None:
        """Keep the current state if it beats the best so far."""
        g = self.gain()
        if g > self.best_gain:
            self.best_gain, self.best_state = g, self.snapshot()

    def restore(self) -> None:
        _restore(self.net, self.best_state)


@dataclass
class _Run:
    """What both stages share: the training crops and their RNG, the clock, the progress outputs."""

    net: GainedMeanScaleHyperprior
    train: list[torch.Tensor]  # uint8 CHW, each at least one crop
    levels: int
    batch: int
    crop: int
    gen: random.Random
    t0: float
    total: int
    bar: tqdm
    progress: ProgressCallback

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of crops and a random rate level for each."""
        x = random_batch(self.train, self.batch, self.crop, self.gen)
        return x, torch.tensor([float(self.gen.randrange(self.levels)) for _ in range(self.batch)])

    def report(self, stage: str, done: int, bpp: float | None, psnr: float) -> None:
        self.bar.update()
        self.progress(ProgressEvent(stage, done, self.total, time.monotonic() - self.t0, bpp, psnr))


def _stage1(run: _Run, sel: _Selection, steps: int, lr: float, validations: int, deadline: float | None) -> int:
    """Every adapter, for the RD loss (noisy rate, straight-through decoder); returns the steps done."""
    val_every = max(1, steps // validations) if validations > 0 else 0
    opt = torch.optim.Adam(adapter_parameters(run.net), lr=lr)
    last: dict[str, torch.Tensor] = {}

    def step(_: int) -> torch.Tensor:
        x, q = run.sample()
        last.update(rd_loss(run.net, x, q))
        return last["loss"]

    def on_step(done: int, _loss: float) -> None:
        if val_every and done % val_every == 0:
            sel.consider()
        psnr = float(10 * torch.log10(1 / last["mse"].mean().clamp_min(1e-10)))
        run.report("domain-stage1", done, float(last["bpp"].mean()), psnr)

    done = optimise(step, opt, Schedule(steps, lr_drop_at=0.8, deadline=deadline), on_step).iterations
    if not val_every or done % val_every:
        sel.consider()
    return done


def _stage2(run: _Run, sel: _Selection, steps: int, lr: float, deadline: float | None, offset: int) -> int:
    """From the best stage-1 state: the last synthesis stack's adapter, for distortion with hard
    rounding (what the decoder really gets); returns the steps done."""
    net = run.net
    sel.restore()
    last = [m for m in net.g_s if isinstance(m, ConvAdapter)][-1]
    for p in adapter_parameters(net):
        p.requires_grad_(False)
    last.requires_grad_(True)
    opt = torch.optim.Adam(last.parameters(), lr=lr)
    mse: dict[str, torch.Tensor] = {}

    def step(_: int) -> torch.Tensor:
        x, q = run.sample()
        with torch.no_grad():
            y = net.g_a(x)
            hard = hard_round(net, y * net.gains(q)[0], net.h_a(y), q)
        x_hat = net.synthesize(ste_round(hard.y_hat), hard.params.inv_gain)
        mse["last"] = (x_hat.clamp(0, 1) - x).pow(2).mean()
        return mse["last"]

    def on_step(done: int, _loss: float) -> None:
        psnr = float(10 * torch.log10(1 / mse["last"].detach().clamp_min(1e-10)))
        run.report("domain-stage2", offset + done, None, psnr)

    done = optimise(step, opt, Schedule(steps, lr_drop_at=None, deadline=deadline), on_step).iterations
    if done:
        sel.consider()  # stage 2 is kept only if it helps on the validation images
    return done


def train_domain(
    base: GainedMeanScaleHyperprior,
    images: list[CodecImage],
    *,
    steps: int = 2000,
    stage2_steps: int = 500,
    batch: int = 4,
    crop: int = 128,
    lr: float = 5e-4,
    stage2_lr: float = 5e-4,
    rank: int = 10,
    validations: int = 6,
    time_budget_s: float | None = None,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
    show: bool = False,
) -> DomainTraining:
    """Train domain adapters for ``base`` on ``images`` (see the module notes); the base stays unchanged.

    Stage 1 may use 80% of ``time_budget_s``; stage 2 stops at the whole budget.
    """
    if len(images) < 2:
        raise ValueError("a domain adapter needs at least 2 sample images (5-25 recommended)")
    gen = random.Random(seed)
    torch.manual_seed(seed)
    order = list(range(len(images)))
    gen.shuffle(order)
    n_val = max(1, len(images) // 5)
    val = [_val_tensor(images[i]) for i in order[:n_val]]
    train = [_crop_source(images[i], crop) for i in order[n_val:]]
    net = attach(base, rank).train()
    sel = _Selection(net, base, val)
    t0 = time.monotonic()
    total = steps + stage2_steps
    bar = tqdm(total=total, desc="domain adapter", disable=not show, leave=False)
    run = _Run(net, train, base.levels, batch, crop, gen, t0, total, bar, progress)
    budget = time_budget_s
    done1 = _stage1(run, sel, steps, lr, validations, None if budget is None else t0 + 0.8 * budget)
    done2 = _stage2(run, sel, stage2_steps, stage2_lr, None if budget is None else t0 + budget, done1)
    bar.close()
    sel.restore()
    net.eval()
    base.eval()
    decoder, encoder = adapter_state(net)
    if not all(torch.isfinite(t).all() for t in (*decoder.values(), *encoder.values())):
        raise FloatingPointError("domain adapter training diverged (non-finite weights); nothing was stored")
    return DomainTraining(
        decoder, encoder, rank, sel.best_gain, len(train), len(val), (done1, done2), time.monotonic() - t0
    )


def _restore(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(net.named_parameters())
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t)


def _val_tensor(img: CodecImage, size: int = VAL_CROP) -> torch.Tensor:
    """A validation image, cut to its most detailed ``size`` window (bench-256's rule) to bound the cost."""
    x, y = most_detailed_window(img.rgb, size)
    patch = img.rgb[y : y + size, x : x + size].copy()
    return torch.from_numpy(patch).permute(2, 0, 1).float() / 255.0
