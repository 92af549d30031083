"""What the adaptive encode needs of a base model, per architecture: one small interface.

The stages (:mod:`codec.adaptation.stages`) optimise latents and adapters through an
:class:`Adaptable`: the analysis, the latent in the domain it is coded in, the entropy parameters
(means are zeros for a scale-only Gaussian), the synthesis (a plain ``nn.Sequential``, so adapters
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

from collections.abc import Callable
from typing import Any

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor, nn

from codec.adaptation.synthesis import default_adapter_positions
from codec.models.gained import EntropyParams, GainedMeanScaleHyperprior
from codec.models.wacnn import is_wacnn
from codec.zoo.context_models import is_context_model
from codec.zoo.decompress import is_plain_hyperprior

#: soft rounding of the optimisation (SGA at a temperature), applied to y minus its means
Rounding = Callable[[Tensor], Tensor]


class NotAdaptableError(ValueError):
    """The model has no :class:`Adaptable` form (a context model, a factorised prior, ...)."""


class Adaptable:
    """A base model as the adaptive encode sees it; subclasses fill in the architecture."""

    net: nn.Module
    g_s: nn.Sequential
    h_a: nn.Sequential
    entropy_bottleneck: EntropyBottleneck
    gaussian_conditional: GaussianConditional

    def analysis(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Continuous (y, z) of a padded image, y in the network's own domain."""
        raise NotImplementedError

    def coded(self, y: Tensor) -> Tensor:
        """y in the domain the entropy coder rounds (the gained domain for gained models)."""
        return y

    def hyper_input(self, yc: Tensor) -> Tensor:
        """What ``h_a`` reads, from a coded-domain y (the DR posterior samples ``h_a`` on it)."""
        raise NotImplementedError

    def z_medians(self) -> Tensor:
        return self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)

    def entropy_params(self, z_hat: Tensor) -> EntropyParams:
        """Gaussian means (zeros for scale-only models) and scales of the coded y."""
        raise NotImplementedError

    def quantize(self, yc: Tensor, p: EntropyParams, rounding: Rounding | None = None) -> tuple[Tensor, EntropyParams]:
        """y rounded as the coder rounds it (soft with ``rounding``, hard with None) and the entropy
        parameters it is coded with; ``p`` is :meth:`entropy_params` of the (rounded) z. Around the
        means here; context models override it (their parameters depend on y itself)."""
        return (torch.round(yc - p.means) if rounding is None else rounding(yc - p.means)) + p.means, p

    def adapter_positions(self) -> tuple[int, ...]:
        """Where adapters go in ``g_s`` when the configuration names no positions."""
        return default_adapter_positions(self.g_s)

    def synthesis_input(self, y_hat: Tensor, p: EntropyParams) -> Tensor:
        """The input of ``g_s`` for coded, rounded latents."""
        return y_hat

    def synthesize(self, y_hat: Tensor, p: EntropyParams) -> Tensor:
        return self.g_s(self.synthesis_input(y_hat, p))

    def compress(self, yc: Tensor, z: Tensor) -> tuple[list[list[bytes]], list[Tensor]]:
        """(strings [y, z], integer symbols [y, z]) of given latents; call under canonical compute."""
        raise NotImplementedError


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

    def analysis(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = self.g_a(x)
        return y, self.h_a(self.hyper_input(y))

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
        from codec.adaptation.backend_context import ContextAdaptable  # it subclasses Adaptable: import here

        return ContextAdaptable(net)
    if is_wacnn(net):
        from codec.adaptation.backend_wacnn import WacnnAdaptable  # it subclasses Adaptable: import here

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
