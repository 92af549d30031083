"""Variable-rate mean-scale hyperprior: the architecture of the embedded default model.

One network serves every rate. A learned *gain vector* per rate level scales the latent y
channel-wise before quantisation and a separate *inverse gain* scales it back before the
synthesis transform (Cui et al., "Asymmetric Gained Deep Image Compression with Continuous
Rate Adaptation", CVPR 2021). Gains between two trained levels are interpolated
geometrically, so any rate in the trained range is reachable from one small file.

Why this and not one model per rate: on two CPU cores the training budget is the limit (see
the model card); one shared model spends every step on all rates, and the per-image and domain
adaptation built on top only has to handle one set of weights.

The entropy model is expressed in the *gained* domain: the hyper-synthesis predicts mean and
scale for the un-gained y, and both are multiplied by the gain, which is exact for a
Gaussian. The hyper-latent z is not gained; its cost is small at every rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models.base import CompressionModel
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

#: the rate levels of the embedded family: CompressAI's MSE lambdas for qualities 1-6
DEFAULT_LAMBDAS: tuple[float, ...] = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483)


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


@dataclass
class EntropyParams:
    """Mean and scale of the Gaussian for the gained latent, plus the gains themselves."""

    means: Tensor
    scales: Tensor
    gain: Tensor
    inv_gain: Tensor


class GainedMeanScaleHyperprior(CompressionModel):
    """Mean-scale hyperprior (Minnen et al. 2018) with gain units for continuous rate control.

    ``q`` everywhere is a *level*: a float in ``[0, levels - 1]``; integer values are the
    trained rate points and fractional values interpolate between them.
    """

    def __init__(
        self, N: int = 64, M: int = 96, lambdas: Sequence[float] = DEFAULT_LAMBDAS, Nh: int | None = None
    ) -> None:
        super().__init__()
        # N: width of the image transforms; Nh: width of the hyper transforms (and channels of z).
        # They are separate so the synthesis can be widened without touching the entropy model.
        self.N, self.M = int(N), int(M)
        self.Nh = int(Nh) if Nh else self.N
        Nh = self.Nh
        levels = len(lambdas)
        self.g_a = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))
        self.g_s = nn.Sequential(
            deconv(M, N),
            GDN(N, inverse=True),
            deconv(N, N),
            GDN(N, inverse=True),
            deconv(N, N),
            GDN(N, inverse=True),
            deconv(N, 3),
        )
        self.h_a = nn.Sequential(
            conv(M, Nh, stride=1, kernel_size=3),
            nn.LeakyReLU(inplace=True),
            conv(Nh, Nh),
            nn.LeakyReLU(inplace=True),
            conv(Nh, Nh),
        )
        # Slimmer than CompressAI's (N -> M -> 3M/2 -> 2M): keeps the fp16 file under 3 MB.
        self.h_s = nn.Sequential(
            deconv(Nh, Nh),
            nn.LeakyReLU(inplace=True),
            deconv(Nh, Nh),
            nn.LeakyReLU(inplace=True),
            conv(Nh, 2 * M, stride=1, kernel_size=3),
        )
        self.entropy_bottleneck = EntropyBottleneck(Nh)
        self.gaussian_conditional = GaussianConditional(None)
        self.register_buffer("lambdas", torch.tensor(list(lambdas), dtype=torch.float32))
        # Optimal step ~ 1/sqrt(lambda) at high rate: start the gains there.
        ref = math.log(lambdas[len(lambdas) // 2])
        init = torch.tensor([0.5 * (math.log(v) - ref) for v in lambdas])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, M).clone())
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, M).clone())
        self.levels = levels
        #: under autocast, keep GDN and each transform's last layer in fp32 (see :meth:`mixed`)
        self.fp32_islands = False

    @classmethod
    def from_config(cls, cfg: dict) -> GainedMeanScaleHyperprior:
        """The network a weights file's or checkpoint's ``config`` describes (``Nh`` optional)."""
        return cls(cfg["N"], cfg["M"], cfg["lambdas"], cfg.get("Nh"))

    def config(self) -> dict:
        """What :meth:`from_config` needs to rebuild this network."""
        return {"N": self.N, "M": self.M, "Nh": self.Nh, "lambdas": [float(v) for v in self.lambdas.tolist()]}

    # ------------------------------------------------------------------ rate control
    def _interp(self, table: Tensor, q: Tensor) -> Tensor:
        """Linear interpolation of rows of ``table`` (levels x C) at float levels ``q`` (B,)."""
        q = q.clamp(0, self.levels - 1)
        lo = q.floor().long().clamp(max=self.levels - 2) if self.levels > 1 else q.long() * 0
        w = (q - lo.to(q.dtype)).unsqueeze(-1)
        if self.levels == 1:
            return table[lo]
        return table[lo] * (1 - w) + table[lo + 1] * w

    def gains(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """Gain and inverse gain, each ``(B, M, 1, 1)``, for float levels ``q`` of shape (B,)."""
        g = torch.exp(self._interp(self.log_gain, q))
        ig = torch.exp(self._interp(self.log_inv_gain, q))
        return g[:, :, None, None], ig[:, :, None, None]

    def lmbda(self, q: Tensor) -> Tensor:
        """The rate-distortion lambda a level stands for (log-linear between trained levels)."""
        return torch.exp(self._interp(torch.log(self.lambdas)[:, None], q)).squeeze(-1)

    def level_for_lambda(self, lmbda: float) -> float:
        """Inverse of :meth:`lmbda`, clamped to the trained range."""
        logs = torch.log(self.lambdas).tolist()
        x = math.log(lmbda)
        if x <= logs[0]:
            return 0.0
        for i in range(len(logs) - 1):
            if x <= logs[i + 1]:
                return i + (x - logs[i]) / (logs[i + 1] - logs[i])
        return float(len(logs) - 1)

    # ------------------------------------------------------------------ building blocks
    def z_medians(self) -> Tensor:
        return self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)

    def entropy_params(self, z_hat: Tensor, q: Tensor) -> EntropyParams:
        """Gaussian parameters of the gained latent, from the dequantised hyper-latent."""
        scales, means = self.mixed(self.h_s, z_hat).chunk(2, 1)
        g, ig = self.gains(q)
        return EntropyParams(means=means * g, scales=scales * g, gain=g, inv_gain=ig)

    def synthesize(self, y_hat_gained: Tensor, inv_gain: Tensor) -> Tensor:
        return self.mixed(self.g_s, y_hat_gained * inv_gain)

    def mixed(self, transform: nn.Sequential, x: Tensor) -> Tensor:
        """Run ``transform``; under autocast its GDNs and its last layer run in fp32.

        Only with :attr:`fp32_islands` set. Those layers produce what must be precise: the latent
        that is quantised, the entropy parameters, the reconstructed pixels, and GDN's sums of
        squares. Measured by ``codec.evaluation.precision_ab`` (800 fine-tuning steps from the
        shipped weights, RD loss on the Kodak crops in fp32): all-bf16 ended 2.4 % worse than fp32,
        with these islands 1.0 % worse; but the islands cost most of bf16's speed
        (``codec.evaluation.train_speed``), so training runs all-bf16 and finishes in fp32
        (``--fp32-tail``). Without autocast this is ``transform(x)``.
        """
        device = x.device.type
        if not (self.fp32_islands and torch.is_autocast_enabled(device)):
            return transform(x)
        last = len(transform) - 1
        for i, layer in enumerate(transform):
            if i == last or isinstance(layer, GDN):
                with torch.autocast(device_type=device, enabled=False):
                    x = layer(x.float())
            else:
                x = layer(x)
        return x

    # ------------------------------------------------------------------ training
    def forward(self, x: Tensor, q: Tensor) -> dict[str, Any]:
        """Training pass with mixed quantisation.

        The rate terms see additive uniform noise (a smooth, unbiased density proxy); the
        decoder sees straight-through rounded values, exactly what it gets at test time.
        """
        y = self.mixed(self.g_a, x)
        z = self.mixed(self.h_a, y)
        # Under bf16 autocast the transforms run in bf16; the rate terms (quantisation offsets,
        # likelihoods) stay fp32: a bf16 CDF difference loses the small probabilities.
        with torch.autocast(device_type=x.device.type, enabled=False):
            y, z = y.float(), z.float()
            _, z_lik = self.entropy_bottleneck(z)
            med = self.z_medians()
            z_hat = ste_round(z - med) + med
        p = self.entropy_params(z_hat, q)
        with torch.autocast(device_type=x.device.type, enabled=False):
            means, scales = p.means.float(), p.scales.float()
            y_g = y * p.gain
            y_hat = ste_round(y_g - means) + means
            # training: a noisy proxy; evaluation: the likelihood of what would really be coded
            y_rate_in = y_g + torch.empty_like(y_g).uniform_(-0.5, 0.5) if self.training else y_hat
            y_lik = self.gaussian_conditional._likelihood(y_rate_in, scales, means)
            y_lik = self.gaussian_conditional.likelihood_lower_bound(y_lik)
        x_hat = self.synthesize(y_hat, p.inv_gain)
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}}

    # ------------------------------------------------------------------ coding
    def analysis(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Continuous (y, z) for an image in [0, 1], shape (1, 3, H, W), H and W multiples of 64."""
        y = self.g_a(x)
        return y, self.h_a(y)

    def compress_latents(self, y: Tensor, z: Tensor, q: Tensor) -> dict[str, object]:
        """Entropy-code given latents (possibly refined) at level ``q``.

        Returns the strings and the integer symbols actually coded (for the symbol hash).
        """
        gain, _ = self.gains(q)
        return self.compress_gained(y * gain, z, q)

    def compress_gained(self, y_g: Tensor, z: Tensor, q: Tensor) -> dict[str, object]:
        """Like :meth:`compress_latents`, for a latent already in the gained (coded) domain."""
        if not (torch.isfinite(y_g).all() and torch.isfinite(z).all()):
            # compressai's rANS coder loops forever on NaN indexes: refuse before it is reached
            raise FloatingPointError("the latents to code are not finite (NaN or inf)")
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        p = self.entropy_params(z_hat, q)
        indexes = self.gaussian_conditional.build_indexes(p.scales)
        y_strings = self.gaussian_conditional.compress(y_g, indexes, means=p.means)
        y_sym = self.gaussian_conditional.quantize(y_g, "symbols", p.means)
        z_sym = torch.round(z_hat - self.z_medians()).to(torch.int32)
        return {"strings": [y_strings, z_strings], "shape": tuple(z.size()[-2:]), "symbols": [y_sym, z_sym]}

    def compress(self, x: Tensor, q: Tensor) -> dict[str, object]:
        y, z = self.analysis(x)
        return self.compress_latents(y, z, q)

    def decompress_latents(
        self, strings: list[list[bytes]], shape: tuple[int, int], q: Tensor
    ) -> tuple[Tensor, EntropyParams, list[Tensor]]:
        """Gained y_hat, its entropy parameters and the decoded integer symbols (y, z)."""
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        p = self.entropy_params(z_hat, q)
        indexes = self.gaussian_conditional.build_indexes(p.scales)
        y_sym = self.gaussian_conditional.decompress(strings[0], indexes)
        z_sym = torch.round(z_hat - self.z_medians()).to(torch.int32)
        return y_sym + p.means, p, [y_sym.to(torch.int32), z_sym]

    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int], q: Tensor) -> dict[str, object]:
        y_hat, p, symbols = self.decompress_latents(strings, shape, q)
        return {"x_hat": self.synthesize(y_hat, p.inv_gain).clamp_(0, 1), "symbols": symbols}
