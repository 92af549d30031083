""":class:`~codec.adaptation.adaptable.Adaptable` for WACNN (:mod:`codec.models.wacnn`), the base
model of seeds 001 and 002.

WACNN's Gaussian means and scales depend on y itself through the channel-wise context: slice i's
come from the hyper maps and the slices before it, each rounded around its own mean and corrected
by latent residual prediction. Unlike a spatial autoregressive context this needs no serial pass
over positions, so:

* **Refinement rate**: the training-mode forward of the whole context in one pass
  (:meth:`~codec.models.wacnn.WACNN.channel_context`): every slice soft-rounded (SGA) around the
  mean its soft-rounded predecessors predict, the rate of all slices at once from those means and
  scales. With hard rounding the same pass gives exactly what the file codes, so the hard
  estimates the refinement keeps its best iterate by are the real symbols, not an approximation.
* **Entropy parameters of z** (what the stages cache while z is fixed, as in ``blr``) are the two
  hyper maps; the means and scales proper come out of :meth:`WacnnAdaptable.quantize`.
* **Synthesis input** is the LRP-corrected y that the quantisation produced (carried in the
  parameters), so ``g_s`` sees what the decoder will give it.
* **Final coding** is the model's own slice-wise coding, which ``codec.decoding`` decodes.

Adapter position (seed 001): 001 inserts one rank-2 adapter (768 parameters) into the *second*
window attention module of the main decoder, ``g_s[5]`` at 192 channels, on its gated branch just
before the module's residual addition. Our adapters are linear maps between layers of ``g_s``, so
ours goes on that module's output (position 5): the same 192 channels at the same depth (1/4
resolution, before the last two upsamplings), rank 2, so the same 768 parameters; it also sees the
module's identity path. Being a channel map right before a transposed convolution, the decoder
folds it into ``g_s[6]`` (``codec.adaptation.decoding.run_folded``): an adapted file decodes at the
cost of a plain one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from codec.adaptation.adaptable import Adaptable, Rounding
from codec.models.gained import EntropyParams
from codec.models.wacnn import WACNN

#: after the second window attention module of g_s (see the module notes)
ADAPTER_POSITION = 5


@dataclass
class SliceParams(EntropyParams):
    """Entropy parameters of a WACNN latent. From :meth:`WacnnAdaptable.entropy_params` (z only):
    the hyper maps, with ``means``/``scales`` still the maps themselves; from
    :meth:`WacnnAdaptable.quantize`: the slices' real means and scales, and ``y_syn``, the
    LRP-corrected y the synthesis reads."""

    maps: tuple[Tensor, Tensor] | None = None
    y_syn: Tensor | None = None


class WacnnAdaptable(Adaptable):
    """A :class:`~codec.models.wacnn.WACNN` as the adaptive encode sees it."""

    def __init__(self, net: WACNN):
        self.net = self.wacnn = net
        self.g_a, self.g_s, self.h_a = net.g_a, net.g_s, net.h_a
        self.entropy_bottleneck, self.gaussian_conditional = net.entropy_bottleneck, net.gaussian_conditional

    def adapter_positions(self) -> tuple[int, ...]:
        return (ADAPTER_POSITION,)

    def entropy_params(self, z_hat: Tensor) -> EntropyParams:
        maps = self.wacnn.hyper_maps(z_hat)
        one = torch.ones((), device=z_hat.device)
        return SliceParams(means=maps[0], scales=maps[1], gain=one, inv_gain=one, maps=maps)

    def quantize(self, yc: Tensor, p: EntropyParams, rounding: Rounding | None = None) -> tuple[Tensor, EntropyParams]:
        """y through the channel-wise context, hard-rounded (None: exactly what the file codes) or
        soft-rounded by ``rounding``, with every slice's mean and scale."""
        assert isinstance(p, SliceParams) and p.maps is not None, "entropy_params first"
        coded = self.wacnn.channel_context(yc, p.maps, torch.round if rounding is None else rounding)
        one = torch.ones((), device=yc.device)
        params = SliceParams(coded.means, coded.scales, one, one, maps=p.maps, y_syn=coded.y_syn)
        return coded.y_hat, params

    def synthesis_input(self, y_hat: Tensor, p: EntropyParams) -> Tensor:
        assert isinstance(p, SliceParams) and p.y_syn is not None, "WACNN synthesises from quantize's output"
        return p.y_syn

    def compress(self, yc: Tensor, z: Tensor) -> tuple[list[list[bytes]], list[Tensor]]:
        out = self.wacnn.compress_latents(yc, z)
        return out["strings"], out["symbols"]
