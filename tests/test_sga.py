"""The two-class SGA rounding (sigmoid + logistic noise) is the Gumbel-softmax of the paper, in law."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from codec.adaptation.sga import sga_round


def _reference(x: torch.Tensor, tau: float) -> torch.Tensor:
    """SGA as written in Yang et al. 2020: a Gumbel-softmax over the two neighbours."""
    lo = torch.floor(x)
    d_lo, d_hi = (x - lo).clamp(1e-5, 1 - 1e-5), (lo + 1 - x).clamp(1e-5, 1 - 1e-5)
    logits = torch.stack([-torch.atanh(d_lo), -torch.atanh(d_hi)], dim=-1) / tau
    w = F.gumbel_softmax(logits, tau=tau, hard=False, dim=-1)
    return lo * w[..., 0] + (lo + 1) * w[..., 1]


def test_same_mean_spread_and_quantiles_as_the_gumbel_softmax() -> None:
    torch.manual_seed(0)
    for value, tau in ((0.3, 0.5), (-1.8, 0.5), (2.55, 0.2), (0.5, 0.05)):
        x = torch.full((400_000,), value)
        ours, ref = sga_round(x, tau), _reference(x, tau)
        assert abs(float(ours.mean() - ref.mean())) < 5e-3
        assert abs(float(ours.std() - ref.std())) < 5e-3
        qs = torch.tensor([0.1, 0.5, 0.9])
        assert torch.allclose(torch.quantile(ours[:100_000], qs), torch.quantile(ref[:100_000], qs), atol=0.02)


def test_gradients_flow_and_stay_between_the_neighbours() -> None:
    x = (torch.randn(1, 8, 16, 16) * 4).requires_grad_(True)
    y = sga_round(x, 0.5)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    lo = torch.floor(x.detach())
    assert bool(((y >= lo) & (y <= lo + 1)).all())
