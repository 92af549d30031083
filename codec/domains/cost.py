"""The estimated real RD cost of an image under a model: how ``domain="auto"`` ranks adapters and
how domain training checks its validation images.

Hard rounding and bits from the likelihoods, no entropy coding: it costs one forward pass. It
lives apart from the trainer so that choosing an adapter at encode time does not load training code.
"""

from __future__ import annotations

import torch

from codec.models.gained import GainedMeanScaleHyperprior


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
