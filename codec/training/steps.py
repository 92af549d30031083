"""The pieces of a training loop both trainers share: the learning-rate schedule, the choice and
one step of a codec's two optimisers, and atomic checkpoint writes (``train_default`` for the
embedded model, ``train_zoo`` for CompressAI's architectures)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch


def lr_at(progress: float, steps_done: int, base: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``base`` to 2 % of it at progress 1."""
    if steps_done < warmup:
        return base * (steps_done + 1) / warmup
    t = min(1.0, max(0.0, progress))
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


#: the optimisers a codec's network can train with (the aux optimiser of the quantiles is always Adam)
OPTIMISERS = ("adam", "soap")


def make_optimiser(kind: str, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """The network's optimiser: Adam, or SOAP (Vyas et al. 2024: Adam in the eigenbasis of a
    Shampoo preconditioner, refreshed every 10 steps; issue 10 cites up to 70 % fewer steps for
    learned codecs). SOAP runs with Adam's betas and no weight decay, so the two differ only in the
    basis; it needs the ``train`` extra (``pytorch-optimizer``), imported only when asked for."""
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    if kind != "soap":
        raise ValueError(f"unknown optimiser {kind!r}: one of {', '.join(OPTIMISERS)}")
    try:
        from pytorch_optimizer import SOAP
    except ImportError as exc:
        raise SystemExit("--optimizer soap needs pytorch-optimizer: pip install -e '.[train]'") from exc
    return SOAP(params, lr=lr, betas=(0.9, 0.999), shampoo_beta=0.99, weight_decay=0.0, precondition_frequency=10)


def optimiser_step(
    loss: torch.Tensor,
    net: torch.nn.Module,
    params: list[torch.nn.Parameter],
    opts: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    lr: float,
) -> torch.Tensor:
    """One step of both optimisers of a learned codec; returns the aux loss.

    The RD loss steps the network at ``lr`` (skipped when it is not finite, so one bad batch
    cannot poison the weights; gradients clipped to norm 1). The entropy bottleneck's quantiles
    have their own optimiser on the aux loss, as CompressAI trains them."""
    opt, aux_opt = opts
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    if torch.isfinite(loss):
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    aux = net.aux_loss()  # type: ignore[operator]
    aux_opt.zero_grad(set_to_none=True)
    aux.backward()
    aux_opt.step()
    return aux


def save_atomic(obj: object, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
