"""Stochastic Gumbel annealing (Yang, Bamler and Mandt 2020): a differentiable stand-in for
rounding whose randomness fades with a temperature, so refined latents end up where hard
rounding will put them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-5


def sga_round(x: Tensor, tau: float) -> Tensor:
    """Soft, stochastic rounding of ``x`` at temperature ``tau`` (-> hard rounding as tau -> 0)."""
    lo = torch.floor(x).detach()
    hi = lo + 1.0
    d_lo = (x - lo).clamp(_EPS, 1 - _EPS)
    d_hi = (hi - x).clamp(_EPS, 1 - _EPS)
    logits = torch.stack([-torch.atanh(d_lo), -torch.atanh(d_hi)], dim=-1) / tau
    w = F.gumbel_softmax(logits, tau=tau, hard=False, dim=-1)
    return lo * w[..., 0] + hi * w[..., 1]


def sga_temperature(step: int, total: int, start: float = 0.5, end_factor: float = math.exp(-1.3)) -> float:
    """0.5 for the first 35% of the steps, then exponential decay to ``0.5 * end_factor``.

    The shape of 003's schedule (0.5 * exp(-1e-3 (k - 700)) over 2000 steps ends at 0.5 e^-1.3),
    stretched to any number of steps, so short budgets anneal fully too.
    """
    t0 = 0.35 * total
    if step <= t0 or total <= 1:
        return start
    rate = -math.log(end_factor) / max(1.0, total - t0)
    return start * math.exp(-rate * (step - t0))
