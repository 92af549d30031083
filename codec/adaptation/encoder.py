"""The content-adaptive encode: plain encode, then latent refinement, then decoder adapters.

Stage 1 (seeds 001-003) optimises the continuous latents y (``blr``), y and z (``sga``), or y and
z with the distribution regulariser of 002 (``dr``), for ``bits/pixel + lambda*255^2*MSE`` with
Adam, quantisation relaxed by stochastic Gumbel annealing. Stage 2 (001) trains small adapters
in the synthesis transform for the same objective with the latents fixed (so the synthesis up to
the first adapter runs once, not per iteration), or channel multipliers (OMP) for distortion.

Every budget returns a valid, verified bitstream, never worse in RD cost than the plain encode:
the final choice is made on *real* files (bytes and decoded pixels) among the plain encode, the
refined latents alone and the refined latents with adapters. Optimisation may run on CUDA; the
final entropy coding and the verification decode run in the canonical CPU mode.

The model is seen through :mod:`codec.adaptation.backends` (the gained default model, or a
CompressAI scale-only / mean-scale hyperprior), so the same stages serve every such architecture.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.adaptation import stages, tiled
from codec.adaptation.adapters import AdapterSpec, dequantised_omp, pack_adapters, pack_omp
from codec.adaptation.backends import Adaptable, NotAdaptableError, adaptable
from codec.adaptation.config import PRESETS, AdaptConfig
from codec.adaptation.qstep import QSteps, require_steppable, stepped_net
from codec.bitstream import Field, Section
from codec.coder import (
    EncodeResult,
    ImageInput,
    _finish,
    encode_resolved,
    load_input,
    pad_image,
    resolve_encode_model,
    to_tensor,
)
from codec.determinism import best_device, bf16_is_fast, canonical_compute
from codec.imageio import DEFAULT_MAX_PIXELS, CodecImage
from codec.progress import ProgressCallback, ProgressEvent, no_progress
from codec.subpixel import with_subpixel_last
from codec.zoo.base import BaseModel
from codec.zoo.errors import InvalidQualityError
from codec.zoo.hashing import symbols_hash
from codec.zoo.registry import Registry, default_registry


def resolve_config(config: AdaptConfig | str, **overrides: Any) -> AdaptConfig:
    """A preset (by name, from :data:`codec.adaptation.config.PRESETS`) or a config, with the
    overrides that are not None replacing its fields."""
    if isinstance(config, str):
        if config not in PRESETS:
            raise InvalidQualityError(f"unknown adaptation preset {config!r}; presets: {', '.join(PRESETS)}")
        config = PRESETS[config]
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class AdaptiveResult:
    result: EncodeResult
    choice: str  # "plain", "latents", "latents+adapters", "latents+omp"
    costs: dict[str, float]  # real RD cost (bpp + lambda*255^2*MSE) of each candidate
    stage_seconds: dict[str, float]
    curve: list[tuple[str, int, float, float]] = field(default_factory=list)  # (stage, iter, elapsed, est. loss)
    points: dict[str, tuple[float, float]] = field(default_factory=dict)  # candidate -> (bpp, PSNR), real files

    @property
    def rd_saving_pct(self) -> float:
        """How much lower the chosen file's real RD cost is than the plain encode's, in percent."""
        plain = self.costs["plain"]
        return 100.0 * (1.0 - self.costs[self.choice] / plain) if plain > 0 else 0.0


# ---------------------------------------------------------------------------- helpers
def _rd(bpp: float, mse: float, lmbda: float) -> float:
    return bpp + lmbda * 255.0**2 * mse


def _real_cost(res: EncodeResult, img: CodecImage, lmbda: float, roi: np.ndarray | None = None) -> float:
    """bpp + lambda*255^2*MSE of a real file; the MSE weighted by the region-of-interest map (mean 1)
    when there is one, so the final choice judges candidates by what the refinement optimised."""
    err = ((res.decoded.rgb.astype(np.float64) - img.rgb.astype(np.float64)) / 255.0) ** 2
    mse = float(np.mean(err if roi is None else err * roi[..., None]))
    return _rd(res.bpp, mse, lmbda)


class _Clock:
    def __init__(self, budget: float | None):
        self.t0, self.budget = time.monotonic(), budget

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def share_left(self, fraction_of_rest: float) -> float | None:
        if self.budget is None:
            return None
        return max(0.0, (self.budget - self.elapsed()) * fraction_of_rest)


# ---------------------------------------------------------------------------- encoder
class AdaptiveEncoder:
    """One image, one base model, one config. Call :meth:`run`."""

    def __init__(
        self,
        base: BaseModel,
        img: CodecImage,
        level: float,
        cfg: AdaptConfig,
        device: torch.device,
        progress: ProgressCallback,
        registry: Registry,
        roi: np.ndarray | None = None,
    ):
        self.base, self.img, self.level, self.cfg = base, img, level, cfg
        try:  # on the CPU: the final coding runs there
            self.coder = adaptable(base.net, torch.tensor([level], dtype=torch.float32))
        except NotAdaptableError as exc:
            raise InvalidQualityError(f"{exc} (model {base.name})") from None
        self.device, self.progress, self.registry = device, progress, registry
        self.lmbda = cfg.lmbda if cfg.lmbda is not None else base.lmbda_at(level)
        if cfg.qstep:
            require_steppable(base)
        self.steps = QSteps()  # the quantisation step the latents are coded with (codec.adaptation.qstep)
        if not self.lmbda > 0:
            raise InvalidQualityError(f"model {base.name} has no training lambda to adapt for (a checkpoint: give one)")
        self.q = torch.tensor([level], dtype=torch.float32, device=device)
        self.tiles = tiled.plan(base, img, cfg)  # above the tiling threshold: codec.adaptation.tiled
        if self.tiles is not None:
            self.coder = self.tiles.coder(level)
        self.x = self.padded_input()
        self.h, self.w = img.height, img.width
        self.pixels = float(self.h * self.w)
        self.roi = roi  # (H, W) weights of mean 1 (codec.roi), or None: plain MSE
        self.roi_t = None if roi is None else torch.from_numpy(roi).float().to(device)[None, None]
        self.curve: list[tuple[str, int, float, float]] = []
        self.clock = _Clock(cfg.time_budget_s)
        # Mixed precision where the hardware runs bf16 natively: CUDA, or a CPU with avx512_bf16/AMX
        # (no loss scaling needed). Only the synthesis runs in bf16; the rates stay fp32 (the
        # likelihoods' 1e-9 floor underflows in 16 bits), and the final coding is canonical fp32.
        self.amp = bool(cfg.amp and bf16_is_fast(device))
        self.net = self._optimisation_copy(base.net, device)
        self.model: Adaptable = adaptable(self.net, self.q)  # what the stages optimise through
        torch.manual_seed(cfg.seed)

    def _optimisation_copy(self, net: nn.Module, device: torch.device) -> nn.Module:
        """The model the stages optimise through: a copy, so the shared base model, which the
        canonical coding uses, is never changed. On the CPU its synthesis' last layer runs as a
        sub-pixel convolution (``cfg.subpixel``; 1.3x faster forward and backward for that layer in
        bf16 here, 1.4x in fp32), and in channels_last for bf16 (oneDNN's fast layout)."""
        subpixel = device.type == "cpu" and self.cfg.subpixel
        if device.type == "cpu" and not self.amp and not subpixel:
            return net
        copied = copy.deepcopy(net).to(device)
        if subpixel:
            with_subpixel_last(getattr(copied, "g_s", None))
        return copied.to(memory_format=torch.channels_last) if self.amp else copied

    def use_steps(self, steps: QSteps) -> None:
        """Code from now on with ``steps`` (set by the refinement): the models the later stages and
        the final coding see are the stepped ones, so they need nothing else."""
        self.steps = steps
        self.model = adaptable(stepped_net(self.net, steps), self.q)
        self.coder = adaptable(stepped_net(self.base.net, steps), torch.tensor([self.level], dtype=torch.float32))

    # --- what the tiled encoder (codec.adaptation.tiled) replaces ---------------------
    def padded_input(self) -> Tensor:
        """The padded float image the stages compare with."""
        if self.tiles is not None:  # the tiles read the image itself, never a whole float copy
            return torch.empty(0)
        return pad_image(to_tensor(self.img.rgb)).to(self.device)

    def analysis(self) -> tuple[Tensor, Tensor]:
        """Continuous (y, z) of the image, to start the refinement from."""
        return self.model.analysis(self.x) if self.tiles is None else self.tiles.analysis(self)

    def coding_fields(self) -> dict[int, bytes]:
        """Header fields every candidate file carries besides the symbol hash."""
        return {} if self.tiles is None else self.tiles.coding_fields()

    def real_cost(self, res: EncodeResult) -> float:
        """The real RD cost of a candidate file (what the final choice compares)."""
        if self.tiles is not None:
            return self.tiles.real_cost(self, res)
        return _real_cost(res, self.img, self.lmbda, self.roi)

    # --- shared pieces (the trainers of codec.adaptation.stages use them) -------------
    def mse(self, x_hat: Tensor) -> Tensor:
        """MSE over the real pixels (not the padding) of the output as decoded: clamped to [0, 1];
        weighted per pixel by the region-of-interest map when there is one."""
        out, ref = x_hat[..., : self.h, : self.w].float().clamp(0, 1), self.x[..., : self.h, : self.w]
        if self.roi_t is None:
            return F.mse_loss(out, ref)
        return ((out - ref) ** 2 * self.roi_t).mean()

    def autocast(self) -> torch.autocast:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def report(self, stage: str, it: int, total: int, bits: float, mse: float) -> None:
        """A progress event (the callback may raise to cancel: it propagates out of the stage)."""
        psnr = 10 * np.log10(1.0 / max(mse, 1e-12))
        self.progress(ProgressEvent(stage, it, total, self.clock.elapsed(), bits / self.pixels, float(psnr)))

    # --- the trainers (codec.adaptation.stages) ----------------------------------------
    def refine_latents(self, y0: Tensor, z0: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 1: refined (gained y, z), the best iterate by its hard-rounded RD loss."""
        return (stages if self.tiles is None else tiled).refine_latents(self, y0, z0)

    def train_adapters(self, yg: Tensor, z: Tensor) -> tuple[list[AdapterSpec], list[int]] | None:
        """Stage 2: adapter weights for fixed latents; None if they came out all zero."""
        return (stages if self.tiles is None else tiled).train_adapters(self, yg, z)

    def train_omp(self, yg: Tensor, z: Tensor) -> tuple[int, Tensor]:
        """Stage 2, the OMP alternative: (position, channel multipliers) for fixed latents."""
        return (stages if self.tiles is None else tiled).train_omp(self, yg, z)

    # --- final coding -----------------------------------------------------------------
    def _code(
        self, yg: Tensor, z: Tensor, extra_sections: dict[int, bytes] | None, extra_symbols: list[int] | None = None
    ) -> EncodeResult:
        """Entropy-code refined latents in canonical mode and verify by decoding."""
        yg, z = yg.detach().cpu(), z.detach().cpu()
        with canonical_compute():
            strings, symbols = self.coder.compress(yg, z)
        symbols = symbols + ([torch.tensor(extra_symbols, dtype=torch.int32)] if extra_symbols else [])
        extra: dict[int, bytes] = {
            Field.SYMBOLS_HASH: symbols_hash(symbols),
            **self.steps.to_fields(),
            **self.coding_fields(),
        }
        return _finish(
            self.base,
            self.img,
            self.level,
            strings,
            registry=self.registry,
            extra_fields=extra,
            extra_sections=extra_sections,
        )

    def adapters_file(self, yg: Tensor, z: Tensor) -> EncodeResult | None:
        """Train adapters for fixed latents and code them into a file; None if they came out all zero."""
        trained = self.train_adapters(yg, z)
        if trained is None:
            return None
        specs, ints = trained
        section = pack_adapters(specs, ints, self.cfg.delta, self.cfg.prior_scale)
        return self._code(yg, z, {Section.ADAPTERS: section}, ints)

    def omp_file(self, yg: Tensor, z: Tensor) -> EncodeResult:
        position, values = self.train_omp(yg, z)
        return self._code(yg, z, {Section.OMP: pack_omp(position, dequantised_omp(values))})

    def run(self) -> AdaptiveResult:
        cfg = self.cfg
        stage_s: dict[str, float] = {}
        t = time.monotonic()
        plain = encode_resolved(self.base, self.img, self.level, self.registry)
        # The plain encode may build and cache a decoder (a domain model's first use draws random
        # initial weights before loading them): seed here, so the optimisation's random draws, and
        # with them the bytes, are the same whether or not this process has coded with it before.
        torch.manual_seed(cfg.seed)
        stage_s["plain"] = time.monotonic() - t
        candidates = {"plain": plain}
        if cfg.latent != "none" and cfg.latent_iters > 0:
            t = time.monotonic()
            with torch.no_grad():
                y0, z0 = self.analysis()
            yg, z = self.refine_latents(y0, z0)
            stage_s["latent-refinement"] = time.monotonic() - t
        else:
            with torch.no_grad():
                y0, z0 = self.analysis()
                yg, z = self.model.coded(y0), z0
        if cfg.latent != "none" and cfg.latent_iters > 0:
            candidates["latents"] = self._code(yg, z, None)
        if cfg.decoder != "none" and cfg.decoder_iters > 0:
            t = time.monotonic()
            if cfg.decoder == "adapters":
                adapted = self.adapters_file(yg, z)
                if adapted is not None:
                    candidates["latents+adapters"] = adapted
            else:
                candidates["latents+omp"] = self.omp_file(yg, z)
            stage_s[cfg.decoder] = time.monotonic() - t
        costs = {name: self.real_cost(r) for name, r in candidates.items()}
        choice = min(costs, key=lambda k: costs[k])
        self.progress(
            ProgressEvent("done", 1, 1, self.clock.elapsed(), candidates[choice].bpp, candidates[choice].psnr)
        )
        points = {name: (r.bpp, r.psnr) for name, r in candidates.items()}
        return AdaptiveResult(candidates[choice], choice, costs, stage_s, self.curve, points)


def encode_with_config(
    base: BaseModel,
    img: CodecImage,
    level: float,
    cfg: AdaptConfig,
    registry: Registry,
    progress: ProgressCallback = no_progress,
    device: torch.device | None = None,
    roi: np.ndarray | None = None,
) -> AdaptiveResult:
    """The one plain-or-adaptive branch, for a resolved model (``codec.coder.resolve_encode_model``).
    ``roi``: a normalised weight map (``codec.roi``) for the distortion of the adaptive stages.

    A config without stages is the plain encode, for any model; its single candidate's real RD cost
    is still reported, so every result compares with the plain encode the same way."""
    if cfg.is_plain:
        res = encode_resolved(base, img, level, registry, progress)
        cost = _real_cost(res, img, base.lmbda_at(level))
        return AdaptiveResult(res, "plain", {"plain": cost}, {}, points={"plain": (res.bpp, res.psnr)})
    return AdaptiveEncoder(base, img, level, cfg, device or best_device(), progress, registry, roi).run()


def adaptive_encode(
    image: ImageInput,
    model: str = "default",
    quality: float | None = None,
    lmbda: float | None = None,
    config: AdaptConfig | str = "fast",
    *,
    registry: Registry | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: ProgressCallback = no_progress,
    device: torch.device | None = None,
    domain: str | None = None,
    **overrides: object,
) -> AdaptiveResult:
    """Encode with content adaptation; see the module notes. ``overrides`` replace config fields.

    The library form of ``codec.pipeline.encode`` (which also gives the metrics a service reports)."""
    cfg = resolve_config(config, **overrides)
    reg = registry or default_registry()
    img = load_input(image, max_pixels)
    base, level = resolve_encode_model(reg, img, model, quality, lmbda, domain)
    return encode_with_config(base, img, level, cfg, reg, progress, device)
