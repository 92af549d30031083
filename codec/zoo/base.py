"""A loaded base model: the one interface the coder uses, whatever the model's origin.

Three kinds sit behind it: the project's gained (variable-rate) model, CompressAI zoo networks
(one per quality) and checkpoints. It hides their differences: how a quality becomes a level
(:mod:`codec.zoo.levels`), and how decoding returns the integer symbols that the bitstream's
symbol hash covers (:mod:`codec.zoo.decompress`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from codec.zoo.context_models import is_context_model, serial_compress
from codec.zoo.decompress import hyperprior_decompress, is_plain_hyperprior, padded_strings
from codec.zoo.errors import InvalidQualityError
from codec.zoo.levels import as_float32, check_lambda, quality_level


@dataclass
class BaseModel:
    """A loaded base model at one operating range.

    ``level`` is what the bitstream's LEVEL field holds: a float32 rate level for gained models
    (continuous), the integer quality for zoo models (one network per quality).
    """

    name: str
    net: nn.Module
    hash: bytes
    variable_rate: bool
    quality_range: tuple[float, float]
    lambdas: tuple[float, ...]
    description: str = ""
    domain: tuple[str, bytes] | None = None  # (id, hash) of a baked-in domain adapter

    @property
    def _coding(self) -> Any:
        """``net`` for its coding methods: they differ by kind (gained ones take a level) and
        CompressAI's carry no types, so they are called untyped, in this class only."""
        return self.net

    # --- quality <-> level -----------------------------------------------------------
    def level_for(self, quality: float | None = None, lmbda: float | None = None) -> float:
        """The level to code at, from a quality (1-based) or a lambda; exact float32 value."""
        if quality is not None and lmbda is not None:
            raise InvalidQualityError("give a quality or a lambda, not both")
        if lmbda is not None:
            check_lambda(self.name, lmbda, self.variable_rate, self.quality_range)
            level = float(self._coding.level_for_lambda(lmbda))
        else:
            level = quality_level(self.name, quality, self.quality_range, whole=not self.variable_rate)
        return as_float32(level)

    def lmbda_at(self, level: float) -> float:
        if self.variable_rate:
            return float(self._coding.lmbda(torch.tensor([level])).item())
        return self.lambdas[int(level)]

    def level_tensor(self, level: float) -> Tensor:
        return torch.tensor([level], dtype=torch.float32)

    # --- coding (called under canonical_compute) --------------------------------------
    def compress(self, x: Tensor, level: float) -> dict[str, Any]:
        """``{"strings", "shape", "symbols"}``; symbols (for the symbol hash) may be None."""
        if self.variable_rate:
            out: dict[str, Any] = self._coding.compress(x, self.level_tensor(level))
            return out
        if is_context_model(self.net):  # CompressAI's compress, with the symbols kept
            y = self._coding.g_a(x)
            z = self._coding.h_a(y)
            strings, symbols = serial_compress(self.net, y, z)
            return {"strings": strings, "shape": z.size()[-2:], "symbols": symbols}
        out = dict(self._coding.compress(x))
        out["symbols"] = out.get("symbols")  # models of ours (WACNN) report them; CompressAI's do not
        if is_plain_hyperprior(self.net):
            out["symbols"] = hyperprior_decompress(self.net, out["strings"], tuple(out["shape"]))[1]
        return out

    def decompress(
        self, strings: list[list[bytes]], shape: tuple[int, int], level: float
    ) -> tuple[Tensor, list[Tensor] | None]:
        """(x_hat, decoded symbols or None). Strings are zero-padded so that no input, however
        crafted, makes the rANS decoder read past its buffer."""
        strings = padded_strings(self.net, strings, shape)
        if self.variable_rate:
            out = self._coding.decompress(strings, shape, self.level_tensor(level))
            return out["x_hat"], out["symbols"]
        if is_plain_hyperprior(self.net):
            return hyperprior_decompress(self.net, strings, shape)
        out = self._coding.decompress(strings, shape)
        return out["x_hat"], out.get("symbols")
