"""The interface the adaptive encode sees a base model through (:class:`Adaptable`); the
implementations and the choice among them are in :mod:`codec.adaptation.backends`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor, nn

from codec.adaptation.synthesis import default_adapter_positions
from codec.models.gained import EntropyParams

#: soft rounding of the optimisation (SGA at a temperature), applied to y minus its means
Rounding = Callable[[Tensor], Tensor]


class NotAdaptableError(ValueError):
    """The model has no :class:`Adaptable` form (a context model, a factorised prior, ...)."""


class Adaptable:
    """A base model as the adaptive encode sees it; subclasses fill in the architecture."""

    net: nn.Module
    g_a: nn.Module
    g_s: nn.Sequential
    h_a: nn.Sequential
    entropy_bottleneck: EntropyBottleneck
    gaussian_conditional: GaussianConditional

    def analysis(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Continuous (y, z) of a padded image, y in the network's own domain (as CompressAI's
        hyperpriors compute them: ``h_a`` reads :meth:`hyper_input` of y)."""
        y = self.g_a(x)
        return y, self.h_a(self.hyper_input(y))

    def coded(self, y: Tensor) -> Tensor:
        """y in the domain the entropy coder rounds (the gained domain for gained models)."""
        return y

    def hyper_input(self, yc: Tensor) -> Tensor:
        """What ``h_a`` reads, from a coded-domain y (the DR posterior samples ``h_a`` on it): y
        itself unless the model gains or folds it first."""
        return yc

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
