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

from codec.datasets import most_detailed_window
from codec.domains.modules import ConvAdapter, adapter_parameters, adapter_state, attach
from codec.imageio import CodecImage
from codec.losses import rd_loss
from codec.models.gained import GainedMeanScaleHyperprior, ste_round
from codec.progress import ProgressCallback, ProgressEvent, no_progress

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


def _tensor(img: CodecImage, crop: int) -> torch.Tensor:
    x = torch.from_numpy(img.rgb.copy()).permute(2, 0, 1).float() / 255.0
    _, h, w = x.shape
    if h < crop or w < crop:  # small images: replicate-pad up to one crop
        x = torch.nn.functional.pad(x[None], (0, max(0, crop - w), 0, max(0, crop - h)), mode="replicate")[0]
    return x


def _batch(images: list[torch.Tensor], batch: int, crop: int, gen: random.Random) -> torch.Tensor:
    out = []
    for _ in range(batch):
        x = images[gen.randrange(len(images))]
        _, h, w = x.shape
        y0, x0 = gen.randrange(h - crop + 1), gen.randrange(w - crop + 1)
        patch = x[:, y0 : y0 + crop, x0 : x0 + crop]
        out.append(patch.flip(-1) if gen.random() < 0.5 else patch)
    return torch.stack(out)


@torch.no_grad()
def rd_cost(net: GainedMeanScaleHyperprior, x: torch.Tensor, level: float) -> float:
    """Estimated real RD cost of one image (hard rounding; bits from the likelihoods)."""
    net.eval()
    h, w = x.shape[-2:]
    ph, pw = (-h) % 64, (-w) % 64
    xp = torch.nn.functional.pad(x[None], (0, pw, 0, ph), mode="replicate")
    q = torch.tensor([level])
    out = net(xp, q)
    bits = sum((-torch.log2(lik)).sum() for lik in out["likelihoods"].values())
    mse = (out["x_hat"][0, :, :h, :w].clamp(0, 1) - x).pow(2).mean()
    return float(bits / (h * w) + net.lmbda(q)[0] * 255.0**2 * mse)


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
    if len(images) < 2:
        raise ValueError("a domain adapter needs at least 2 sample images (5-25 recommended)")
    gen = random.Random(seed)
    torch.manual_seed(seed)
    order = list(range(len(images)))
    gen.shuffle(order)
    n_val = max(1, len(images) // 5)
    val = [_val_tensor(images[i]) for i in order[:n_val]]
    train = [_tensor(images[i], crop) for i in order[n_val:]]
    net = attach(base, rank).train()
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    base.eval()
    levels = (0.0, (base.levels - 1) / 2, float(base.levels - 1))
    before = [[rd_cost(base, x, lv) for lv in levels] for x in val]

    def validation_gain() -> float:
        """Mean RD-cost saving on the validation images (a model-selection criterion, as in 004)."""
        gains = [
            100.0 * (1.0 - rd_cost(net, x, lv) / b)
            for x, row in zip(val, before, strict=True)
            for lv, b in zip(levels, row, strict=True)
        ]
        net.train()
        return float(np.mean(gains))

    def snapshot() -> dict[str, torch.Tensor]:
        params = dict(net.named_parameters())
        return {n: params[n].detach().clone() for n in names}

    best_gain, best_state = 0.0, snapshot()  # the identity adapters: never worse than the base model

    def consider() -> None:
        nonlocal best_gain, best_state
        g = validation_gain()
        if g > best_gain:
            best_gain, best_state = g, snapshot()

    val_every = max(1, steps // validations) if validations > 0 else 0
    t0 = time.monotonic()
    deadline = None if time_budget_s is None else t0 + time_budget_s
    opt = torch.optim.Adam(adapter_parameters(net), lr=lr)
    total = steps + stage2_steps
    bar = tqdm(total=total, desc="domain adapter", disable=not show, leave=False)
    done1 = 0
    for it in range(steps):
        if deadline is not None and time.monotonic() > t0 + 0.8 * time_budget_s:  # type: ignore[operator]
            break
        for g in opt.param_groups:
            g["lr"] = lr * (0.1 if it >= 0.8 * steps else 1.0)
        x = _batch(train, batch, crop, gen)
        q = torch.tensor([float(gen.randrange(base.levels)) for _ in range(batch)])
        out = rd_loss(net, x, q)
        opt.zero_grad(set_to_none=True)
        if torch.isfinite(out["loss"]):  # one non-finite estimate must not turn the adapters into NaN
            out["loss"].backward()
            opt.step()
        done1 = it + 1
        if val_every and done1 % val_every == 0:
            consider()
        bar.update()
        progress(
            ProgressEvent(
                "domain-stage1",
                done1,
                total,
                time.monotonic() - t0,
                float(out["bpp"].mean()),
                float(10 * torch.log10(1 / out["mse"].mean().clamp_min(1e-10))),
            )
        )
    if not val_every or done1 % val_every:
        consider()
    # stage 2 (from the best stage-1 state): the last synthesis stack's adapter, distortion only, hard rounding
    _restore(net, best_state)
    last = [m for m in net.g_s if isinstance(m, ConvAdapter)][-1]
    for p in adapter_parameters(net):
        p.requires_grad_(False)
    last.requires_grad_(True)
    opt2 = torch.optim.Adam(last.parameters(), lr=stage2_lr)
    done2 = 0
    for _ in range(stage2_steps):
        if deadline is not None and time.monotonic() > deadline:
            break
        x = _batch(train, batch, crop, gen)
        q = torch.tensor([float(gen.randrange(base.levels)) for _ in range(batch)])
        with torch.no_grad():
            y = net.g_a(x)
            z = net.h_a(y)
            med = net.z_medians()
            z_hat = torch.round(z - med) + med
            p = net.entropy_params(z_hat, q)
            y_hat = torch.round(y * p.gain - p.means) + p.means
        x_hat = net.synthesize(ste_round(y_hat), p.inv_gain)
        mse = (x_hat.clamp(0, 1) - x).pow(2).mean()
        opt2.zero_grad(set_to_none=True)
        mse.backward()
        opt2.step()
        done2 += 1
        bar.update()
        progress(
            ProgressEvent(
                "domain-stage2",
                done1 + done2,
                total,
                time.monotonic() - t0,
                None,
                float(10 * torch.log10(1 / mse.detach().clamp_min(1e-10))),
            )
        )
    bar.close()
    if done2:
        consider()  # stage 2 is kept only if it helps on the validation images
    _restore(net, best_state)
    net.eval()
    base.eval()
    decoder, encoder = adapter_state(net)
    if not all(torch.isfinite(t).all() for t in (*decoder.values(), *encoder.values())):
        raise FloatingPointError("domain adapter training diverged (non-finite weights); nothing was stored")
    return DomainTraining(
        decoder, encoder, rank, best_gain, len(train), len(val), (done1, done2), time.monotonic() - t0
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
