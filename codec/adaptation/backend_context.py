""":class:`~codec.adaptation.adaptable.Adaptable` for CompressAI's autoregressive context models:
``mbt2018`` (``JointAutoregressiveHierarchicalPriors``), ``cheng2020-anchor`` and ``cheng2020-attn``.

Their Gaussian's means and scales depend on y itself: a masked 5x5 convolution over the already
coded latents (the context), joined with the hyperprior's output by the entropy-parameter network.
The real coder visits the positions one after the other in raster order and rounds each y around
its mean given the positions before it (:mod:`codec.zoo.context_models`), which is far too slow to
run at every optimisation step. So:

* **Refinement** uses the parallel, training-mode rate: the masked convolution runs once over the
  whole soft-quantised y. The rounding grid is offset by the means the context of the *continuous*
  y predicts (within half a bin of the coded y, so these means are close to the serial ones); the
  rate is the likelihood of that rounded y under the means and scales its own context predicts.
* **Hard estimates** (what the refinement checks to keep its best iterate) solve the serial
  system ``y_hat = round(y - mu(y_hat)) + mu(y_hat)`` by fixed-point passes of the parallel context
  from the same start, until a pass changes no integer symbol (:data:`HARD_PASSES` at most). Each
  pass settles at least the next raster position; measured on a 256x256 Kodak crop with random
  weights, one pass left 0.5 % of the symbols different from the serial coder's, four 0.01-0.02 %,
  eight none (``tests/test_zoo_context_adaptation.py`` checks < 1 %). It remains an estimate.
* **Final coding** is the model's own serial coding (:func:`~codec.zoo.context_models.serial_compress`),
  so the decoder decodes adapted files as it decodes plain ones, and the final choice among
  candidates is made on those real files, as for every other model.

Adapter positions (seed 001): ``mbt2018``'s synthesis is that of ``mbt2018-mean``, so its adapter
goes after the last inverse GDN, late in the decoder, as there. For ``cheng2020-*`` seed 001 puts
it after the first convolution of the final residual block. Our adapters are linear maps between
layers of the synthesis and cannot reach inside a residual block, so the position is the input of
that block: the block's first convolution then sees the adapted features (the map acts before it
instead of after), still at the last resolution before the output's sub-pixel convolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from codec.adaptation.adaptable import Adaptable, Rounding
from codec.models.gained import EntropyParams
from codec.zoo.context_models import context_params, serial_compress, synthesis_view

#: fixed-point passes of the parallel context for a hard estimate (stops earlier when settled)
HARD_PASSES = 8


@dataclass
class ContextParams(EntropyParams):
    """The hyperprior's output, before any context: ``means``/``scales`` are what an empty context
    gives (the first raster position's), ``hyper`` is what every position's parameters start from."""

    hyper: Tensor | None = None


class ContextAdaptable(Adaptable):
    """``mbt2018`` or ``cheng2020-*`` (exact CompressAI classes, as ``codec.decoding`` decodes)."""

    def __init__(self, net: nn.Module):
        model: Any = net  # CompressAI's modules carry no types
        self.net = net
        self.g_a, self.h_a, self.h_s = model.g_a, model.h_a, model.h_s
        self.g_s = synthesis_view(net)
        self.entropy_bottleneck, self.gaussian_conditional = model.entropy_bottleneck, model.gaussian_conditional
        self.cheng = type(net).__name__.startswith("Cheng2020")

    def adapter_positions(self) -> tuple[int, ...]:
        """cheng2020: the input of the final residual block (see the module notes); mbt2018: the default."""
        return (len(self.g_s) - 3,) if self.cheng else super().adapter_positions()

    def _one(self, like: Tensor) -> Tensor:
        return torch.ones((), device=like.device)

    def entropy_params(self, z_hat: Tensor) -> EntropyParams:
        hyper = self.h_s(z_hat)
        m = hyper.shape[1] // 2
        empty = torch.zeros(hyper.shape[0], m, *hyper.shape[2:], device=hyper.device, dtype=hyper.dtype)
        scales, means = context_params(self.net, empty, hyper)
        one = self._one(z_hat)
        return ContextParams(means=means, scales=scales, gain=one, inv_gain=one, hyper=hyper)

    def quantize(self, yc: Tensor, p: EntropyParams, rounding: Rounding | None = None) -> tuple[Tensor, EntropyParams]:
        """Soft (``rounding``) or hard (None) quantised y with the parameters its context gives."""
        assert isinstance(p, ContextParams) and p.hyper is not None
        hyper, one = p.hyper, self._one(yc)
        _, mu = context_params(self.net, yc, hyper)  # the context of the continuous y
        if rounding is None:  # settled when a pass changes no integer symbol
            sym = torch.round(yc - mu)
            for _ in range(HARD_PASSES - 1):
                _, mu = context_params(self.net, sym + mu, hyper)
                nxt = torch.round(yc - mu)
                settled = torch.equal(nxt, sym)
                sym = nxt
                if settled:
                    break
            y_t = sym + mu
        else:
            y_t = rounding(yc - mu) + mu
        scales, means = context_params(self.net, y_t, hyper)
        return y_t, EntropyParams(means=means, scales=scales, gain=one, inv_gain=one)

    def compress(self, yc: Tensor, z: Tensor) -> tuple[list[list[bytes]], list[Tensor]]:
        if not (torch.isfinite(yc).all() and torch.isfinite(z).all()):
            raise FloatingPointError("the latents to code are not finite (NaN or inf)")  # rANS would hang
        return serial_compress(self.net, yc, z)
