"""``domain="auto"``: pick, per image, the stored domain adapter (or none) that codes it cheapest.

One forward pass per candidate at the requested level, hard rounding, estimated bits: the RD cost
``bpp + lambda*255^2*MSE`` decides. No entropy coding, so it costs a fraction of an encode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from codec.domains.cost import rd_cost
from codec.domains.store import DomainError
from codec.imageio import CodecImage
from codec.models.gained import GainedMeanScaleHyperprior

if TYPE_CHECKING:  # the registry bakes adapters (it imports this package): a type, not a runtime dependency
    from codec.zoo.registry import Registry


def choose_domain(reg: Registry, model: str, img: CodecImage, level: float) -> tuple[str | None, dict[str, float]]:
    """(best domain id or None, RD cost of every candidate: 'none' and each adapter id)."""
    base = reg.get(model)
    x = torch.from_numpy(img.rgb.copy()).permute(2, 0, 1).float() / 255.0
    costs = {"none": rd_cost(_gained(base.net), x, level)}
    for rec in reg.domains.list():
        if rec.base_model != model or rec.base_hash != base.hash.hex():
            continue
        costs[rec.id] = rd_cost(_gained(reg.domain_model(model, rec.id).net), x, level)
    best = min(costs, key=lambda k: costs[k])
    return (None if best == "none" else best), costs


def _gained(net: nn.Module) -> GainedMeanScaleHyperprior:
    """The rate estimate needs a gained model: others (fixed-rate architectures) get no adapters."""
    if not isinstance(net, GainedMeanScaleHyperprior):
        raise DomainError("domain adapters need a variable-rate base model")
    return net
