"""Rate terms (bits) of the hyperprior's entropy models, for optimisation, and the latents as they
would really be coded (hard rounding), which the per-image refinement and the domain trainer share.

Hard rounding and its bits work on any :class:`~codec.adaptation.backends.Adaptable` (the gained
model, or a CompressAI scale-only / mean-scale hyperprior, whose means are zeros)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor

from codec.adaptation.backends import Adaptable, GainedAdaptable
from codec.adaptation.zstep import SteppedBottleneck
from codec.models.gained import EntropyParams, GainedMeanScaleHyperprior


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


@dataclass(frozen=True)
class HardLatents:
    """Latents rounded the way the entropy coder rounds them, with the entropy parameters they imply."""

    y_hat: Tensor  # gained: rounded around the means, still to be multiplied by ``params.inv_gain``
    z_hat: Tensor
    params: EntropyParams


@torch.no_grad()
def hard_latents(model: Adaptable, yc: Tensor, z: Tensor) -> HardLatents:
    """What the decoder will see for coded-domain ``yc`` and ``z``: z rounded around the medians,
    y around the means the rounded z predicts (``model.compress`` codes exactly these)."""
    med = model.z_medians()
    eb = model.entropy_bottleneck
    z_hat = eb.rounded(z, med) if isinstance(eb, SteppedBottleneck) else torch.round(z - med) + med
    p = model.entropy_params(z_hat)
    y_hat, p = model.quantize(yc, p)
    return HardLatents(y_hat, z_hat, p)


@torch.no_grad()
def hard_round(net: GainedMeanScaleHyperprior, yg: Tensor, z: Tensor, q: Tensor) -> HardLatents:
    """:func:`hard_latents` of the gained model at levels ``q`` (gained ``yg``)."""
    return hard_latents(GainedAdaptable(net, q), yg, z)


@torch.no_grad()
def hard_bits(model: Adaptable, hard: HardLatents) -> Tensor:
    """Estimated bits of hard-rounded latents (the likelihoods; the real file adds only framing)."""
    p = hard.params
    return y_bits(model.gaussian_conditional, hard.y_hat, p.scales, p.means) + z_bits(
        model.entropy_bottleneck, hard.z_hat
    )
