"""Differentiable rate terms (bits) of the hyperprior's entropy models, for optimisation."""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor


def z_bits(eb: EntropyBottleneck, z: Tensor) -> Tensor:
    """Bits of (already quantised or relaxed) ``z`` under the factorised prior."""
    c = z.shape[1]
    v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
    lik, _, _ = eb._likelihood(v)
    if eb.use_likelihood_bound:
        lik = eb.likelihood_lower_bound(lik)
    return -torch.log2(lik).sum()


def y_bits(gc: GaussianConditional, y: Tensor, scales: Tensor, means: Tensor) -> Tensor:
    lik = gc._likelihood(y, scales, means)
    if gc.use_likelihood_bound:
        lik = gc.likelihood_lower_bound(lik)
    return -torch.log2(lik).sum()


def gaussian_nll_bits(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """-log2 N(x; mean, var), summed (the distribution regulariser of seed 002)."""
    var = var.clamp_min(1e-6)
    nats = 0.5 * (torch.log(2 * torch.pi * var) + (x - mean) ** 2 / var)
    return nats.sum() / torch.log(torch.tensor(2.0))
