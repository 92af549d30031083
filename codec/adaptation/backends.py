"""What the adaptive encode needs of a base model, per architecture: one small interface.

The stages (:mod:`codec.adaptation.stages`) optimise latents and adapters through an
:class:`~codec.adaptation.adaptable.Adaptable` (the interface has its own module, so that the
implementations in other modules and the choice among them here import no cycle): the analysis,
the latent in the domain it is coded in, the entropy parameters (means are zeros for a scale-only
Gaussian), the synthesis (a plain ``nn.Sequential``, so adapters
hook after its layers) and the final entropy coding. Each implementation codes exactly as that
model's plain bitstreams are coded, so the decoder needs nothing new:

* :class:`GainedAdaptable`: the project's variable-rate mean-scale model (``default``), coded in the
  gained domain. Its calls are the ones the encoder always made, so its bytes do not change.
* :class:`ZooAdaptable`: CompressAI's ``ScaleHyperprior`` (``bmshj2018-hyperprior``: a zero-mean
  Gaussian with the hyper-predicted scales, ``z = h_a(|y|)``) and ``MeanScaleHyperprior``
  (``mbt2018-mean``), zoo weights or a checkpoint of those architectures. Their coding repeats
  CompressAI's ``compress`` after the analysis (what ``codec.decoding`` decodes), with the
  integer symbols kept for the symbol hash.

* :class:`~codec.adaptation.backend_context.ContextAdaptable`: CompressAI's autoregressive context
  models (``mbt2018``, ``cheng2020-*``): parallel rate for the optimisation, their own serial coding.
* :class:`~codec.adaptation.backend_wacnn.WacnnAdaptable`: WACNN (``--arch wacnn`` checkpoints),
  its channel-wise context in one training-mode pass for the rate, its own slice-wise coding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from codec.adaptation.adaptable import Adaptable, NotAdaptableError, Rounding
from codec.adaptation.backend_context import ContextAdaptable
from codec.adaptation.backend_wacnn import WacnnAdaptable
from codec.models.gained import EntropyParams, GainedMeanScaleHyperprior
from codec.models.wacnn import is_wacnn
from codec.zoo.context_models import is_context_model
from codec.zoo.decompress import is_plain_hyperprior

#: the interface (:mod:`codec.adaptation.adaptable`) is imported from here too
__all__ = [
    "Adaptable",
    "ContextAdaptable",
    "GainedAdaptable",
    "NotAdaptableError",
    "Rounding",
    "WacnnAdaptable",
    "ZooAdaptable",
    "adaptable",
    "is_adaptable",
]


class GainedAdaptable(Adaptable):
    """:class:`GainedMeanScaleHyperprior` at one level ``q``."""

    def __init__(self, net: GainedMeanScaleHyperprior, q: Tensor):
        self.net, self.gained, self.q = net, net, q
        self.g_s, self.h_a = net.g_s, net.h_a
        self.entropy_bottleneck, self.gaussian_conditional = net.entropy_bottleneck, net.gaussian_conditional

    def analysis(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.gained.analysis(x)

    def coded(self, y: Tensor) -> Tensor:
        return y * self.gained.gains(self.q)[0]

    def hyper_input(self, yc: Tensor) -> Tensor:
        return yc / self.gained.gains(self.q)[0]

    def z_medians(self) -> Tensor:
        return self.gained.z_medians()

    def entropy_params(self, z_hat: Tensor) -> EntropyParams:
        return self.gained.entropy_params(z_hat, self.q)

    def synthesis_input(self, y_hat: Tensor, p: EntropyParams) -> Tensor:
        return y_hat * p.inv_gain

    def synthesize(self, y_hat: Tensor, p: EntropyParams) -> Tensor:
        return self.gained.synthesize(y_hat, p.inv_gain)

    def compress(self, yc: Tensor, z: Tensor) -> tuple[list[list[bytes]], list[Tensor]]:
        out: dict[str, Any] = self.gained.compress_gained(yc, z, self.q)
        return out["strings"], out["symbols"]


class ZooAdaptable(Adaptable):
    """CompressAI's ScaleHyperprior or MeanScaleHyperprior (exact classes, as ``codec.decoding`` decodes)."""

    def __init__(self, net: nn.Module):
        model: Any = net  # CompressAI's modules carry no types
        self.net = net
        self.with_means = type(net).__name__ == "MeanScaleHyperprior"
        self.g_s, self.h_a, self.h_s = model.g_s, model.h_a, model.h_s
        self.entropy_bottleneck, self.gaussian_conditional = model.entropy_bottleneck, model.gaussian_conditional
        self.g_a = model.g_a

    def hyper_input(self, yc: Tensor) -> Tensor:
        return yc if self.with_means else torch.abs(yc)

    def entropy_params(self, z_hat: Tensor) -> EntropyParams:
        params = self.h_s(z_hat)
        if self.with_means:
            scales, means = params.chunk(2, 1)
        else:  # zero means: round(y - 0) + 0 is round(y), what CompressAI codes without means
            scales, means = params, torch.zeros_like(params)
        one = torch.ones((), device=z_hat.device)
        return EntropyParams(means=means, scales=scales, gain=one, inv_gain=one)

    def compress(self, yc: Tensor, z: Tensor) -> tuple[list[list[bytes]], list[Tensor]]:
        if not (torch.isfinite(yc).all() and torch.isfinite(z).all()):
            raise FloatingPointError("the latents to code are not finite (NaN or inf)")  # rANS would hang
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        z_strings = eb.compress(z)
        z_hat = eb.decompress(z_strings, z.size()[-2:])
        params = self.h_s(z_hat)
        means = None
        if self.with_means:
            params, means = params.chunk(2, 1)
        indexes = gc.build_indexes(params)
        y_strings = gc.compress(yc, indexes, means=means)
        y_sym = gc.quantize(yc, "symbols", means).to(torch.int32)
        z_sym = torch.round(z_hat - self.z_medians()).to(torch.int32)
        return [y_strings, z_strings], [y_sym, z_sym]


def adaptable(net: nn.Module, q: Tensor) -> Adaptable:
    """The :class:`Adaptable` of a base network at level ``q`` (used by gained models only)."""
    if isinstance(net, GainedMeanScaleHyperprior):
        return GainedAdaptable(net, q)
    if is_plain_hyperprior(net):
        return ZooAdaptable(net)
    if is_context_model(net):
        return ContextAdaptable(net)
    if is_wacnn(net):
        return WacnnAdaptable(net)
    raise NotAdaptableError(
        f"adaptive encoding supports the variable-rate models (like 'default'), wacnn and the "
        f"bmshj2018-hyperprior / mbt2018-mean / mbt2018 / cheng2020 architectures, not {type(net).__name__}"
    )


def is_adaptable(net: nn.Module) -> bool:
    """Whether :func:`adaptable` accepts ``net`` (the service checks before queueing)."""
    return (
        isinstance(net, GainedMeanScaleHyperprior) or is_plain_hyperprior(net) or is_context_model(net) or is_wacnn(net)
    )
