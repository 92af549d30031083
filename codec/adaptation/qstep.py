"""Adaptive quantisation step for y (seed 003, appendix A.2): one per-image step, coded in the header.

With a step ``D`` the coder codes ``round((y - mean) / D)`` under the Gaussian of scale ``sigma / D``
and the decoder rebuilds ``y_hat = mean + D * q``. In the gained model (``codec.models.gained``) y is
coded as ``y * gain`` with mean and scale multiplied by the same gain, and rebuilt as
``y_hat * inv_gain``; a step is therefore exactly a gain of ``gain / D`` and an inverse gain of
``inv_gain * D``. :class:`SteppedGained` is the model with those gains (sharing every weight), so
the whole coding path (whole-tensor and channel-grouped coder, decoder, tiled synthesis, adapters)
codes with a step unchanged, and a file without the field is byte-identical to before.

Why a scalar, not a step per channel: the per-channel gains already are a per-channel step that the
model learned; a per-image vector of 96 steps at 8 bits would cost 96 bytes, 4 % of a 256x256 crop at
0.3 bpp, for freedom the latent refinement mostly has already. One byte buys the global rate move that
the trained levels cannot make (below the lowest, above the highest).

The step is stored as ``k`` (signed byte, :data:`Field.QSTEP_Y`), ``D = 2 ** (k / 16)``, ``|k| <= 48``
(``D`` in [1/8, 8], 4.4 % apart: the RD cost is flat that close to its optimum). The refinement
optimises ``log2 D`` by gradient with the latents (:class:`StepSearch`), rounded to that grid in the
forward pass (straight-through), so what it optimises is what is coded.

The z step of 003 (``Dz`` from a 7-value grid, :data:`Field.QSTEP_Z`) is a stepped factorised prior
(:mod:`codec.adaptation.zstep`); :class:`StepSearch` picks it by the hard RD loss on the grid before
the refinement and again for its best iterate, as 003 found a gradient on ``Dz`` harmful.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from codec.adaptation.backends import Adaptable, GainedAdaptable
from codec.adaptation.sga import sga_round
from codec.adaptation.zstep import Z_GRID, Z_IDENTITY, SteppedBottleneck, z_step_of
from codec.bitstream import BitstreamError, Container, Field
from codec.models.gained import GainedMeanScaleHyperprior, ste_round
from codec.zoo.base import BaseModel
from codec.zoo.errors import InvalidQualityError

if TYPE_CHECKING:  # the encoder imports this module: a run-time import would be a cycle
    from codec.adaptation.encoder import AdaptiveEncoder

#: grid of the stored y step: D = 2 ** (k / STEPS_PER_OCTAVE)
STEPS_PER_OCTAVE = 16
#: |k| at most this: D in [1/8, 8]
MAX_CODE = 48


def step_of(code: int) -> float:
    """The y step a stored code stands for (the one float both encoder and decoder use)."""
    return float(2.0 ** (code / STEPS_PER_OCTAVE))


@dataclass(frozen=True)
class QSteps:
    """The quantisation steps of one file; ``y_code`` 0 and ``z_index`` 3 are the model's own
    quantisation (no field)."""

    y_code: int = 0
    z_index: int = Z_IDENTITY

    @property
    def dy(self) -> float:
        return step_of(self.y_code)

    @property
    def dz(self) -> float:
        return z_step_of(self.z_index)

    @property
    def is_identity(self) -> bool:
        return self.y_code == 0 and self.z_index == Z_IDENTITY

    def to_fields(self) -> dict[int, bytes]:
        """Header fields, each only when it is not the identity: files without a step stay as they were."""
        if abs(self.y_code) > MAX_CODE or not 0 <= self.z_index < Z_GRID:
            raise ValueError(f"quantisation steps off their grids: {self}")
        fields: dict[int, bytes] = {}
        if self.y_code != 0:
            fields[Field.QSTEP_Y] = struct.pack("<b", self.y_code)
        if self.z_index != Z_IDENTITY:
            fields[Field.QSTEP_Z] = struct.pack("<B", self.z_index)
        return fields

    @classmethod
    def from_container(cls, c: Container) -> QSteps:
        """The steps a file asks for, checked: a wrong length or a step off the grid is refused."""
        code, index = 0, Z_IDENTITY
        for tag in (Field.QSTEP_Y, Field.QSTEP_Z):
            raw = c.fields.get(tag)
            if raw is not None and len(raw) != 1:
                raise BitstreamError(f"bitstream is corrupt (field {tag.name} has {len(raw)} bytes)")
        if Field.QSTEP_Y in c.fields:
            (code,) = struct.unpack("<b", c.fields[Field.QSTEP_Y])
            if abs(code) > MAX_CODE:
                raise BitstreamError(f"bitstream is corrupt (y quantisation step code {code} outside +-{MAX_CODE})")
        if Field.QSTEP_Z in c.fields:
            index = c.fields[Field.QSTEP_Z][0]
            if index >= Z_GRID:
                raise BitstreamError(
                    f"bitstream is corrupt (z quantisation step {index} outside its {Z_GRID}-value grid)"
                )
        return cls(code, index)


class SteppedGained(GainedMeanScaleHyperprior):
    """A gained model coding y with step ``dy`` (gains divided by it, inverse gains multiplied) and z
    with step ``dz`` (a :class:`SteppedBottleneck`; its tables only when ``tables``).

    Shares every module and parameter with ``net`` (nothing is copied); ``dy`` may be a tensor
    with a gradient (the refinement optimises it) or the stored step's float (coding)."""

    def __init__(self, net: GainedMeanScaleHyperprior, dy: Tensor | float, dz: float = 1.0, tables: bool = True):
        nn.Module.__init__(self)  # the modules are net's own: do not build fresh ones
        self.N, self.M, self.Nh, self.levels = net.N, net.M, net.Nh, net.levels
        self.fp32_islands = net.fp32_islands
        self.g_a, self.g_s, self.h_a, self.h_s = net.g_a, net.g_s, net.h_a, net.h_s
        self.entropy_bottleneck, self.gaussian_conditional = net.entropy_bottleneck, net.gaussian_conditional
        self.log_gain, self.log_inv_gain = net.log_gain, net.log_inv_gain
        self.register_buffer("lambdas", net.lambdas)
        self.dy = dy
        if dz != 1.0:
            self.entropy_bottleneck = SteppedBottleneck(net.entropy_bottleneck, dz, tables)

    def gains(self, q: Tensor) -> tuple[Tensor, Tensor]:
        g, ig = super().gains(q)
        return g / self.dy, ig * self.dy


def stepped_net(net: nn.Module, steps: QSteps) -> nn.Module:
    """``net`` coding with ``steps`` (itself for the identity)."""
    if steps.is_identity:
        return net
    if not isinstance(net, GainedMeanScaleHyperprior):
        raise BitstreamError("bitstream is corrupt (a quantisation step for a model without gains)")
    return SteppedGained(net, steps.dy, steps.dz)


def with_steps(base: BaseModel, c: Container) -> BaseModel:
    """The decoder's model for a file: ``base`` with the file's steps (``base`` itself without)."""
    steps = QSteps.from_container(c)
    return base if steps.is_identity else replace(base, net=stepped_net(base.net, steps))


class StepSearch:
    """The steps as the refinement optimises them: ``log2 Dy`` with Adam, rounded to the stored grid
    (straight-through); ``Dz`` by the hard RD loss on its grid (:meth:`pick_z`), fixed in between.

    ``Dy`` starts at ``sqrt(lambda_level / lambda)`` (the high-rate optimum of a uniform quantiser's
    step scales as ``1 / sqrt(lambda)``): 1 when the refinement's lambda is the level's own, and near
    the right step when a lambda beyond the trained levels is asked for."""

    def __init__(self, enc: AdaptiveEncoder):
        net = enc.net
        if not isinstance(net, GainedMeanScaleHyperprior):
            raise ValueError("the adaptive quantisation step needs a variable-rate (gained) model")
        self.net, self.q = net, enc.q
        start = 0.5 * math.log2(enc.base.lmbda_at(enc.level) / enc.lmbda)
        self.log2_dy = torch.tensor(float(start), device=enc.device).requires_grad_(True)
        self.z_index = Z_IDENTITY

    def params(self) -> list[Tensor]:
        return [self.log2_dy]

    def _model(self, dy: Tensor | float, dz: float) -> Adaptable:
        return GainedAdaptable(SteppedGained(self.net, dy, dz, tables=False), self.q)

    def relaxed(self, yg: Tensor) -> tuple[Adaptable, Tensor]:
        """(stepped model, y in its coded domain) with the differentiable grid step."""
        code = ste_round(self.log2_dy * STEPS_PER_OCTAVE).clamp(-MAX_CODE, MAX_CODE)
        dy = torch.exp2(code / STEPS_PER_OCTAVE)
        return self._model(dy, z_step_of(self.z_index)), yg / dy

    def relaxed_z(self, z: Tensor, med: Tensor, tau: float) -> Tensor:
        """z SGA-rounded with the current z step."""
        dz = z_step_of(self.z_index)
        return (sga_round((z - med) / dz, tau) * dz + med) if dz != 1.0 else sga_round(z - med, tau) + med

    def steps(self) -> QSteps:
        """The current steps, as they would be stored."""
        code = round(float(self.log2_dy.detach()) * STEPS_PER_OCTAVE)
        return QSteps(max(-MAX_CODE, min(MAX_CODE, code)), self.z_index)

    def hard(self, yg: Tensor, steps: QSteps | None = None) -> tuple[Adaptable, Tensor]:
        """(stepped model, y in its coded domain) at stored steps (the current ones by default)."""
        steps = steps or self.steps()
        return self._model(steps.dy, steps.dz), yg / steps.dy

    def pick_z(self, loss: Callable[[QSteps], float], y_code: int | None = None) -> QSteps:
        """The z step of the grid with the lowest ``loss`` (with ``y_code``, or the current y step);
        it becomes the current one."""
        y = self.steps().y_code if y_code is None else y_code
        costs = {i: loss(QSteps(y, i)) for i in range(Z_GRID)}
        self.z_index = min(costs, key=lambda i: costs[i])
        return QSteps(y, self.z_index)


def require_steppable(base: BaseModel) -> None:
    """Refuse ``qstep`` for a model without gains (CompressAI zoo models), before any work."""
    if not isinstance(base.net, GainedMeanScaleHyperprior):
        raise InvalidQualityError(
            f"the adaptive quantisation step (fast+qstep) needs a variable-rate model like 'default', not {base.name}"
        )
