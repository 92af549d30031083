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
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from codec.adaptation.adapters import (
    AdapterSpec,
    apply_adapter,
    as_stored,
    dequantised_omp,
    logistic_bits,
    pack_adapters,
    pack_omp,
    split_params,
)
from codec.adaptation.rate import gaussian_nll_bits, y_bits, z_bits
from codec.adaptation.sga import sga_round, sga_temperature
from codec.adaptation.synthesis import channels_after, default_adapter_positions, run_layers
from codec.bitstream import Field, Section
from codec.coder import EncodeResult, _finish, encode_report, pad_image, to_tensor
from codec.determinism import best_device, canonical_compute
from codec.imageio import DEFAULT_MAX_PIXELS, CodecImage, load_image
from codec.models.gained import EntropyParams, GainedMeanScaleHyperprior, ste_round
from codec.progress import ProgressCallback, ProgressEvent, no_progress
from codec.zoo.registry import BaseModel, InvalidQualityError, Registry, default_registry, symbols_hash

LatentMode = Literal["none", "blr", "sga", "dr"]
DecoderMode = Literal["none", "adapters", "omp"]


@dataclass(frozen=True)
class AdaptConfig:
    latent: LatentMode = "sga"
    latent_iters: int = 2000
    latent_lr: float = 1e-3
    decoder: DecoderMode = "adapters"
    decoder_iters: int = 500
    decoder_lr: float = 1e-3
    lr_drop_at: float = 0.8  # learning rate x0.1 after this fraction of a stage (seed 001)
    adapter_rank: int = 2
    adapter_positions: tuple[int, ...] | None = None  # None: the architecture's default
    adapter_init_std: float = 0.02
    delta: float = 0.06  # quantisation interval of adapter weights
    prior_scale: float = 0.05  # logistic prior scale for adapter weights
    dr_beta: float = 1.0
    dr_samples: int = 20
    dr_dropout: float = 0.5
    time_budget_s: float | None = None
    early_stop_patience: int = 0  # iterations without relative improvement > tol; 0 = off
    early_stop_tol: float = 1e-3
    amp: bool = True  # bf16 autocast of the synthesis transform on GPUs that support it (rates stay fp32)
    seed: int = 0


PRESETS: dict[str, AdaptConfig] = {
    "none": AdaptConfig(latent="none", latent_iters=0, decoder="none", decoder_iters=0),
    "fast": AdaptConfig(
        latent="sga", latent_iters=250, latent_lr=5e-3, decoder="adapters", decoder_iters=100, decoder_lr=5e-3
    ),
    "balanced": AdaptConfig(
        latent="dr", latent_iters=600, latent_lr=3e-3, decoder="adapters", decoder_iters=200, decoder_lr=3e-3
    ),
    "paper": AdaptConfig(latent="sga", latent_iters=2000, latent_lr=1e-3, decoder="adapters", decoder_iters=500),
    "max": AdaptConfig(latent="dr", latent_iters=2000, latent_lr=1e-3, decoder="adapters", decoder_iters=500),
}


def resolve_config(config: AdaptConfig | str, **overrides: object) -> AdaptConfig:
    if isinstance(config, str):
        if config not in PRESETS:
            raise InvalidQualityError(f"unknown adaptation preset {config!r}; presets: {', '.join(PRESETS)}")
        config = PRESETS[config]
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


@dataclass
class AdaptiveResult:
    result: EncodeResult
    choice: str  # "plain", "latents", "latents+adapters", "latents+omp"
    costs: dict[str, float]  # real RD cost (bpp + lambda*255^2*MSE) of each candidate
    stage_seconds: dict[str, float]
    curve: list[tuple[str, int, float, float]] = field(default_factory=list)  # (stage, iter, elapsed, est. loss)
    points: dict[str, tuple[float, float]] = field(default_factory=dict)  # candidate -> (bpp, PSNR), real files


# ---------------------------------------------------------------------------- helpers
def _rd(bpp: float, mse: float, lmbda: float) -> float:
    return bpp + lmbda * 255.0**2 * mse


def _real_cost(res: EncodeResult, img: CodecImage, lmbda: float) -> float:
    mse = float(np.mean(((res.decoded.rgb.astype(np.float64) - img.rgb.astype(np.float64)) / 255.0) ** 2))
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


class _EarlyStop:
    def __init__(self, patience: int, tol: float):
        self.patience, self.tol, self.best, self.since = patience, tol, float("inf"), 0

    def update(self, loss: float) -> bool:
        if self.patience <= 0:
            return False
        if loss < self.best * (1 - self.tol):
            self.best, self.since = loss, 0
        else:
            self.since += 1
        return self.since >= self.patience


def _dropout_hyper_encoder(h_a: nn.Sequential, p: float) -> nn.Sequential:
    """h_a with dropout after each activation (MC-dropout posterior of seed 002)."""
    layers: list[nn.Module] = []
    for layer in h_a:
        layers.append(layer)
        if isinstance(layer, nn.LeakyReLU | nn.ReLU):
            layers.append(nn.Dropout(p))
    return nn.Sequential(*layers)


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
    ):
        if not isinstance(base.net, GainedMeanScaleHyperprior):
            raise InvalidQualityError(
                f"adaptive encoding supports the variable-rate models (like 'default'), not {base.name}"
            )
        self.base, self.img, self.level, self.cfg = base, img, level, cfg
        self.device, self.progress, self.registry = device, progress, registry
        self.net: GainedMeanScaleHyperprior = base.net if device.type == "cpu" else copy.deepcopy(base.net).to(device)
        self.lmbda = base.lmbda_at(level)
        self.q = torch.tensor([level], dtype=torch.float32, device=device)
        self.x = pad_image(to_tensor(img.rgb)).to(device)
        self.h, self.w = img.height, img.width
        self.pixels = float(self.h * self.w)
        self.curve: list[tuple[str, int, float, float]] = []
        self.clock = _Clock(cfg.time_budget_s)
        # mixed precision only where it is safe and useful: CUDA with bf16 (no loss scaling needed).
        # Only the synthesis runs in bf16; likelihoods stay fp32 (their 1e-9 floor underflows in 16 bits).
        self.amp = bool(cfg.amp and device.type == "cuda" and torch.cuda.is_bf16_supported())
        torch.manual_seed(cfg.seed)

    # --- shared pieces --------------------------------------------------------------
    def _mse(self, x_hat: Tensor) -> Tensor:
        """MSE over the real pixels (not the padding) of the output as decoded: clamped to [0, 1]."""
        return F.mse_loss(x_hat[..., : self.h, : self.w].float().clamp(0, 1), self.x[..., : self.h, : self.w])

    def _autocast(self) -> torch.autocast:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _event(self, stage: str, it: int, total: int, bits: float, mse: float) -> None:
        psnr = 10 * np.log10(1.0 / max(mse, 1e-12))
        self.progress(ProgressEvent(stage, it, total, self.clock.elapsed(), bits / self.pixels, float(psnr)))

    def _lr(self, base_lr: float, it: int, total: int) -> float:
        return base_lr * (0.1 if it >= self.cfg.lr_drop_at * total else 1.0)

    # --- stage 1 ----------------------------------------------------------------------
    def refine_latents(self, y0: Tensor, z0: Tensor) -> tuple[Tensor, Tensor]:
        """Refined (gained y, z); returns the best iterate by its hard-rounded RD loss."""
        cfg, net = self.cfg, self.net
        total = cfg.latent_iters
        gain, _ = net.gains(self.q)
        yg = (y0 * gain).detach().clone().requires_grad_(True)
        z = z0.detach().clone().requires_grad_(cfg.latent != "blr")
        params = [yg] + ([z] if cfg.latent != "blr" else [])
        opt = torch.optim.Adam(params, lr=cfg.latent_lr)
        med = net.z_medians()
        drop_h_a = _dropout_hyper_encoder(net.h_a, cfg.dr_dropout).train() if cfg.latent == "dr" else None
        budget = self.clock.share_left(cfg.latent_iters / max(1, cfg.latent_iters + cfg.decoder_iters))
        stop = _EarlyStop(cfg.early_stop_patience, cfg.early_stop_tol)
        best = (self._hard_loss(yg, z), yg.detach().clone(), z.detach().clone())
        self.curve.append(("latent-hard", 0, self.clock.elapsed(), best[0]))
        fixed = None
        if cfg.latent == "blr":
            with torch.no_grad():
                z_fixed = torch.round(z - med) + med
                fixed = (z_fixed, net.entropy_params(z_fixed, self.q))
        t_start = time.monotonic()
        check_every = max(1, total // 10)
        for it in range(total):
            for g in opt.param_groups:
                g["lr"] = self._lr(cfg.latent_lr, it, total)
            tau = sga_temperature(it, total)
            if fixed is not None:  # blr: z, and so the entropy parameters, do not change
                z_t, p = fixed
            else:
                z_t = sga_round(z - med, tau) + med
                p = net.entropy_params(z_t, self.q)
            y_t = sga_round(yg - p.means, tau) + p.means
            bits = y_bits(net.gaussian_conditional, y_t, p.scales, p.means) + z_bits(net.entropy_bottleneck, z_t)
            with self._autocast():
                x_hat = net.synthesize(y_t, p.inv_gain)
            mse = self._mse(x_hat)
            loss = bits / self.pixels + self.lmbda * 255.0**2 * mse
            if drop_h_a is not None:
                y_in = (yg / gain).expand(cfg.dr_samples, -1, -1, -1)
                samples = drop_h_a(y_in)
                post_mean, post_var = samples.mean(0, keepdim=True), samples.var(0, keepdim=True)
                loss = loss + cfg.dr_beta * gaussian_nll_bits(z_t, post_mean, post_var) / self.pixels
            opt.zero_grad(set_to_none=True)
            if torch.isfinite(loss):  # a non-finite estimate must not turn the latents into NaN
                loss.backward()
                opt.step()
            loss_v = float(loss.detach())
            self.curve.append(("latent-refinement", it + 1, self.clock.elapsed(), loss_v))
            self._event("latent-refinement", it + 1, total, float(bits.detach()), float(mse.detach()))
            last = it + 1 == total
            timed_out = budget is not None and time.monotonic() - t_start >= budget
            flat = stop.update(loss_v)
            if (it + 1) % check_every == 0 or last or timed_out or flat:
                hard = self._hard_loss(yg, z)
                self.curve.append(("latent-hard", it + 1, self.clock.elapsed(), hard))
                if hard < best[0]:
                    best = (hard, yg.detach().clone(), z.detach().clone())
            if timed_out or flat:
                break
        return best[1], best[2]

    @torch.no_grad()
    def _hard(self, yg: Tensor, z: Tensor) -> tuple[Tensor, Tensor, EntropyParams]:
        """Bits, y_hat and entropy parameters of the latents as they would really be coded."""
        net = self.net
        med = net.z_medians()
        z_hat = torch.round(z - med) + med
        p = net.entropy_params(z_hat, self.q)
        y_hat = torch.round(yg - p.means) + p.means
        bits = y_bits(net.gaussian_conditional, y_hat, p.scales, p.means) + z_bits(net.entropy_bottleneck, z_hat)
        return bits, y_hat, p

    def _latent_bits(self, yg: Tensor, z: Tensor) -> float:
        return float(self._hard(yg, z)[0])

    @torch.no_grad()
    def _hard_loss(self, yg: Tensor, z: Tensor) -> float:
        bits, y_hat, p = self._hard(yg, z)
        mse = self._mse(self.net.synthesize(y_hat, p.inv_gain))
        return float(bits / self.pixels + self.lmbda * 255.0**2 * mse)

    # --- stage 2 ----------------------------------------------------------------------
    def _decoded_latents(self, yg: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        _, y_hat, p = self._hard(yg, z)
        return y_hat, p.inv_gain

    def train_adapters(self, yg: Tensor, z: Tensor) -> tuple[list[AdapterSpec], list[int]] | None:
        cfg, g_s = self.cfg, self.net.g_s
        delta = as_stored(cfg.delta)  # exactly what the decoder will multiply by
        prior_scale = as_stored(cfg.prior_scale)
        positions = cfg.adapter_positions or default_adapter_positions(g_s)
        specs = [AdapterSpec(p, channels_after(g_s, p), cfg.adapter_rank) for p in sorted(positions)]
        y_hat, ig = self._decoded_latents(yg, z)
        latent_bits = self._latent_bits(yg, z)  # fixed in this stage: reported with the adapter bits
        first = specs[0].position
        with torch.no_grad():
            feat = run_layers(g_s, y_hat * ig, 0, first + 1)  # fixed: computed once
        n = sum(s.size for s in specs)
        w = (torch.randn(n, device=self.device) * cfg.adapter_init_std).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=cfg.decoder_lr)
        total = cfg.decoder_iters
        budget = self.clock.share_left(1.0)
        stop = _EarlyStop(cfg.early_stop_patience, cfg.early_stop_tol)
        t_start = time.monotonic()
        for it in range(total):
            for g in opt.param_groups:
                g["lr"] = self._lr(cfg.decoder_lr, it, total)
            w_dec = ste_round(w / delta) * delta
            w_rate = w + (torch.rand_like(w) - 0.5) * delta
            bits = logistic_bits(w_rate, delta, prior_scale)
            hooks = {
                s.position: (lambda f, ab=ab: apply_adapter(f, *ab))
                for s, ab in zip(specs, split_params(w_dec, specs), strict=True)
            }
            with self._autocast():
                x_hat = run_layers(g_s, hooks[first](feat), first + 1, None, hooks)
            mse = self._mse(x_hat)
            loss = bits / self.pixels + self.lmbda * 255.0**2 * mse
            opt.zero_grad(set_to_none=True)
            if torch.isfinite(loss):
                loss.backward()
                opt.step()
            loss_v = float(loss.detach())
            self.curve.append(("adapters", it + 1, self.clock.elapsed(), loss_v))
            self._event("adapters", it + 1, total, latent_bits + float(bits.detach()), float(mse.detach()))
            if (budget is not None and time.monotonic() - t_start >= budget) or stop.update(loss_v):
                break
        ints = torch.round(w.detach() / delta).to(torch.int64).cpu().tolist()
        if not any(ints):
            return None  # all-zero adapters change nothing: do not spend bytes on them
        return specs, ints

    def train_omp(self, yg: Tensor, z: Tensor) -> tuple[int, Tensor]:
        cfg, g_s = self.cfg, self.net.g_s
        position = (cfg.adapter_positions or default_adapter_positions(g_s))[0]
        y_hat, ig = self._decoded_latents(yg, z)
        with torch.no_grad():
            feat = run_layers(g_s, y_hat * ig, 0, position + 1)
        scale = torch.ones(1, feat.shape[1], 1, 1, device=self.device, requires_grad=True)
        opt = torch.optim.Adam([scale], lr=cfg.decoder_lr)
        total = cfg.decoder_iters
        for it in range(total):
            for g in opt.param_groups:
                g["lr"] = self._lr(cfg.decoder_lr, it, total)
            mse = self._mse(run_layers(g_s, feat * scale, position + 1))
            opt.zero_grad(set_to_none=True)
            mse.backward()  # distortion only, as in the OMP baseline
            opt.step()
            self._event("omp", it + 1, total, 0.0, float(mse.detach()))
        return position, scale.detach().flatten().cpu()

    # --- final coding -----------------------------------------------------------------
    def _code(
        self, yg: Tensor, z: Tensor, extra_sections: dict[int, bytes] | None, extra_symbols: list[int] | None = None
    ) -> EncodeResult:
        """Entropy-code refined latents in canonical mode and verify by decoding."""
        net = self.base.net
        yg, z = yg.detach().cpu(), z.detach().cpu()
        q = torch.tensor([self.level], dtype=torch.float32)
        with canonical_compute():
            out = net.compress_gained(yg, z, q)
        symbols = out["symbols"] + ([torch.tensor(extra_symbols, dtype=torch.int32)] if extra_symbols else [])
        extra = {Field.SYMBOLS_HASH: symbols_hash(symbols)}
        return _finish(
            self.base,
            self.img,
            self.level,
            out["strings"],
            expected=None,
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
        plain = encode_report(
            self.img,
            model=self.base.name,
            quality=self.level + 1.0,
            registry=self.registry,
            domain=self.base.domain[0] if self.base.domain else None,
        )
        stage_s["plain"] = time.monotonic() - t
        candidates = {"plain": plain}
        if cfg.latent != "none" and cfg.latent_iters > 0:
            t = time.monotonic()
            with torch.no_grad():
                y0, z0 = self.net.analysis(self.x)
            yg, z = self.refine_latents(y0, z0)
            stage_s["latent-refinement"] = time.monotonic() - t
        else:
            with torch.no_grad():
                y0, z0 = self.net.analysis(self.x)
                gain, _ = self.net.gains(self.q)
            yg, z = y0 * gain, z0
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
        costs = {name: _real_cost(r, self.img, self.lmbda) for name, r in candidates.items()}
        choice = min(costs, key=lambda k: costs[k])
        self.progress(
            ProgressEvent("done", 1, 1, self.clock.elapsed(), candidates[choice].bpp, candidates[choice].psnr)
        )
        points = {name: (r.bpp, r.psnr) for name, r in candidates.items()}
        return AdaptiveResult(candidates[choice], choice, costs, stage_s, self.curve, points)


def adaptive_encode(
    image: str | Path | bytes | Image.Image | CodecImage,
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
    """Encode with content adaptation; see the module notes. ``overrides`` replace config fields."""
    cfg = resolve_config(config, **overrides)
    reg = registry or default_registry()
    img = image if isinstance(image, CodecImage) else load_image(image, max_pixels=max_pixels)
    base, level = reg.resolve(model, quality, lmbda)
    if domain == "auto":
        from codec.domains.auto import choose_domain

        domain, _ = choose_domain(reg, base.name, img, level)
    if domain is not None:
        base = reg.domain_model(base.name, domain)
    if cfg.latent == "none" and cfg.decoder == "none":
        res = encode_report(img, model=model, quality=level + 1.0, registry=reg, progress=progress, domain=domain)
        cost = _real_cost(res, img, base.lmbda_at(level))
        return AdaptiveResult(res, "plain", {"plain": cost}, {}, points={"plain": (res.bpp, res.psnr)})
    enc = AdaptiveEncoder(base, img, level, cfg, device or best_device(), progress, reg)
    return enc.run()
