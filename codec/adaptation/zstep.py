"""The hyper-latent z coded with a quantisation step ``Dz`` from a 7-value grid (seed 003, A.2).

z has a factorised (non-parametric) prior with fixed integer tables, one per channel, stored with the
weights so that every decoder codes with the same integers. Bins of width ``Dz`` need other tables.
They are derived here from the *stored integer* tables, not from the float network: the stored CDF
at the unit-bin edges, read as a piecewise-linear function, is evaluated at the edges of the wider
or narrower bins, and the differences become the new probabilities (then CompressAI's own
``pmf_to_quantized_cdf``). Only correctly rounded IEEE double operations on integers and the grid's
constants go in, so every decoder derives the same tables, as it reads the same stored ones.

:class:`SteppedBottleneck` stands in for the model's ``EntropyBottleneck`` wherever the coding path
uses it (compress, decompress, medians, and the tables the decoder's z floor reads), and its
``_likelihood`` gives the relaxed rate of z at that step for the refinement.

003 searches ``Dz`` on a grid because a gradient on it hurt; its 7 values cost 3 bits (a byte here).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from compressai._CXX import pmf_to_quantized_cdf
from compressai.ans import RansDecoder, RansEncoder
from compressai.entropy_models import EntropyBottleneck
from torch import Tensor, nn

from codec.adaptation.sga import sga_round

#: Dz = 2 ** ((i - Z_IDENTITY) / 2) for i in 0..6: 2^-1.5 ... 2^1.5, as 003
Z_GRID = 7
Z_IDENTITY = 3


def z_step_of(index: int) -> float:
    return float(2.0 ** ((index - Z_IDENTITY) / 2))


def stepped_tables(eb: EntropyBottleneck, dz: float) -> tuple[Tensor, Tensor, Tensor]:
    """(quantized cdf, cdf lengths, offsets) of ``eb``'s stored tables for bins of width ``dz``."""
    cdf = eb._quantized_cdf.cpu().numpy().astype(np.float64)
    lengths = eb._cdf_length.cpu().numpy().astype(np.int64)
    offsets = eb._offset.cpu().numpy().astype(np.int64)
    precision = int(eb.entropy_coder_precision)
    total = float(1 << precision)
    rows: list[list[int]] = []
    new_offsets: list[int] = []
    for c in range(cdf.shape[0]):
        n = int(lengths[c]) - 2  # in-range symbols; the last table entry is the escape (tails)
        edges = cdf[c, : n + 1]  # cdf at the unit-bin edges u_j = offset - 0.5 + j
        u0 = float(offsets[c]) - 0.5
        k_min = math.floor(u0 / dz - 0.5) + 1
        k_max = math.ceil((u0 + n) / dz + 0.5) - 1
        k = np.arange(k_min, k_max + 1, dtype=np.float64)
        lo = _interp(np.maximum((k - 0.5) * dz, u0), u0, edges)
        hi = _interp(np.minimum((k + 0.5) * dz, u0 + n), u0, edges)
        pmf = [*((hi - lo) / total).tolist(), (total - edges[n]) / total]
        rows.append(pmf_to_quantized_cdf(pmf, precision))
        new_offsets.append(k_min)
    width = max(len(r) for r in rows)
    table = torch.zeros(len(rows), width, dtype=torch.int32)
    for c, r in enumerate(rows):
        table[c, : len(r)] = torch.tensor(r, dtype=torch.int32)
    return table, torch.tensor([len(r) for r in rows], dtype=torch.int32), torch.tensor(new_offsets, dtype=torch.int32)


def _interp(x: np.ndarray, u0: float, edges: np.ndarray) -> np.ndarray:
    """The piecewise-linear cdf through ``edges`` at ``u0 + j``, at ``x`` (inside that range)."""
    pos = x - u0
    j = np.minimum(np.floor(pos), len(edges) - 2).astype(np.int64)
    frac = pos - j
    return edges[j] + frac * (edges[j + 1] - edges[j])


class SteppedBottleneck(EntropyBottleneck):
    """``eb`` coding z with step ``dz``: ``round((z - median) / dz)`` under the derived tables, and
    ``z_hat = median + dz * symbol``. Shares ``eb``'s parameters; the tables are built only when
    ``tables`` is set (coding, decoding), not for the refinement's rate estimates."""

    def __init__(self, eb: EntropyBottleneck, dz: float, tables: bool = True):
        nn.Module.__init__(self)  # eb's own parameters, no fresh ones
        self.base, self.dz = eb, dz
        self.use_likelihood_bound = eb.use_likelihood_bound
        self.likelihood_lower_bound = eb.likelihood_lower_bound
        self.entropy_coder_precision = eb.entropy_coder_precision
        if tables:
            self._quantized_cdf, self._cdf_length, self._offset = stepped_tables(eb, dz)

    def _get_medians(self) -> Tensor:
        return self.base._get_medians()

    def _likelihood(self, inputs: Tensor, stop_gradient: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """The probability of a bin of width ``dz`` around ``inputs`` (the relaxed rate of z)."""
        half = 0.5 * self.dz
        lower = self.base._logits_cumulative(inputs - half, stop_gradient=stop_gradient)
        upper = self.base._logits_cumulative(inputs + half, stop_gradient=stop_gradient)
        return torch.sigmoid(upper) - torch.sigmoid(lower), lower, upper

    def rounded(self, z: Tensor, med: Tensor, tau: float | None = None) -> Tensor:
        """z as coded (``tau`` None) or SGA-relaxed at temperature ``tau``, around the medians."""
        v = (z - med) / self.dz
        return (torch.round(v) if tau is None else sga_round(v, tau)) * self.dz + med

    def _channel_indexes(self, shape: tuple[int, ...]) -> list[int]:
        c, plane = shape[1], int(np.prod(shape[2:]))
        return torch.arange(c, dtype=torch.int32).repeat_interleave(plane).tolist()

    def _tables(self) -> tuple[list[list[int]], list[int], list[int]]:
        return self._quantized_cdf.tolist(), self._cdf_length.tolist(), self._offset.tolist()

    def compress(self, z: Tensor) -> list[bytes]:
        med = self._get_medians().detach().reshape(1, -1, 1, 1)
        symbols = torch.round((z - med) / self.dz).to(torch.int32)
        string = RansEncoder().encode_with_indexes(
            symbols.reshape(-1).tolist(), self._channel_indexes(tuple(z.shape)), *self._tables()
        )
        return [string]

    def decompress(self, strings: list[bytes], size: tuple[int, int]) -> Tensor:
        if len(strings) != 1:
            raise ValueError("one z string per image")
        shape = (1, int(self._quantized_cdf.shape[0]), *size)
        decoder = RansDecoder()
        decoder.set_stream(strings[0])
        values = decoder.decode_stream(self._channel_indexes(shape), *self._tables())
        med = self._get_medians().detach().reshape(1, -1, 1, 1)
        return torch.tensor(values, dtype=torch.float32).reshape(shape) * self.dz + med
