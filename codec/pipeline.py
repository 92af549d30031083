"""The one encode entry point: an :class:`EncodeRequest` in, an :class:`EncodeOutcome` out.

The CLI, the worker and the evaluation scripts used to each branch between the plain encode, the
adaptive encode and a domain adapter themselves, and the copies drifted (the CLI dropped
``--domain`` with ``--adapt``). Now a caller says *what* it wants in a request and :func:`encode`
does the rest once: load the image, resolve model, level and domain
(``codec.coder.resolve_encode_model``), run the plain or the adaptive encode
(``codec.adaptation.encoder.encode_with_config``). The outcome carries everything a caller reports
(bytes, bpp, PSNR, the adaptation's choice and saving, the domain actually used), so no caller
parses its own bitstream to learn what it made.

Progress and cancellation: ``progress`` receives :class:`codec.progress.ProgressEvent` s; raising
from it stops the encode (the exception propagates unchanged), which is how the worker cancels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from codec.adaptation.config import AdaptConfig
from codec.adaptation.encoder import AdaptiveResult, encode_with_config, resolve_config
from codec.coder import EncodeResult, ImageInput, load_input, resolve_encode_model
from codec.imageio import DEFAULT_MAX_PIXELS
from codec.progress import ProgressCallback, no_progress
from codec.rate_control import InvalidTargetError, RateTarget, TargetReport, encode_to_target
from codec.roi import RoiError, RoiSpec
from codec.zoo import DEFAULT_MODEL, Registry, default_registry


@dataclass(frozen=True)
class EncodeRequest:
    """What to encode with, by name: everything a user chooses, nothing about the image.

    Rate: ``quality`` (1-based, fractions allowed for variable-rate models) or ``lmbda``, or
    neither for the model's middle quality. ``adaptation`` is a preset name
    (``codec.adaptation.config.PRESET_NAMES``) or a full config; ``time_budget_s``, ``latent_iters``
    and ``decoder_iters`` override the config's fields when set. ``domain`` is a stored domain
    adapter id, ``"auto"`` (the cheapest stored adapter for this image, or none) or None.
    ``target`` (``codec.rate_control.RateTarget``: bytes, bpp or PSNR) replaces the quality: the level
    is searched on real files (then neither ``quality`` nor ``lmbda`` may be given). ``roi``
    (``codec.roi.RoiSpec``) weights the distortion of the adaptive stages towards a region.
    """

    model: str = DEFAULT_MODEL
    quality: float | None = None
    lmbda: float | None = None
    adaptation: str | AdaptConfig = "none"
    time_budget_s: float | None = None
    latent_iters: int | None = None
    decoder_iters: int | None = None
    domain: str | None = None
    target: RateTarget | None = None
    roi: RoiSpec | None = None  # a region of interest (codec.roi): needs an adaptation preset

    @property
    def adaptation_name(self) -> str:
        """The preset's name, or ``"custom"`` for a config given as such."""
        return self.adaptation if isinstance(self.adaptation, str) else "custom"

    def config(self) -> AdaptConfig:
        """The adaptation config this request runs (raises InvalidQualityError for an unknown preset)."""
        return resolve_config(
            self.adaptation,
            time_budget_s=self.time_budget_s,
            latent_iters=self.latent_iters,
            decoder_iters=self.decoder_iters,
        )


@dataclass(frozen=True)
class EncodeOutcome:
    """A verified bitstream and what callers report about it."""

    request: EncodeRequest
    adaptive: AdaptiveResult  # the choice among candidates, their real RD costs, stage timings, curve
    target: TargetReport | None = None  # what a target encode reached, and its cost in probes

    @property
    def result(self) -> EncodeResult:
        """The chosen bitstream with its verification decode (``data``, ``bpp``, ``psnr``, ...)."""
        return self.adaptive.result

    @property
    def data(self) -> bytes:
        return self.adaptive.result.data

    @property
    def choice(self) -> str:
        """``"plain"``, ``"latents"``, ``"latents+adapters"`` or ``"latents+omp"``."""
        return self.adaptive.choice

    @property
    def rd_saving_pct(self) -> float:
        return self.adaptive.rd_saving_pct

    @property
    def domain(self) -> str | None:
        """The domain adapter the bitstream was coded with (what ``"auto"`` chose), or None."""
        return self.adaptive.result.domain

    @property
    def quality(self) -> float:
        """The 1-based quality coded at (from a lambda too): the resolved level + 1."""
        return self.adaptive.result.level + 1.0

    def metrics(self) -> dict[str, object]:
        """The figures a service shows for a finished encode (PSNR None when lossless: JSON has no inf)."""
        r = self.adaptive.result
        return {
            "bytes": len(r.data),
            "bpp": r.bpp,
            "psnr": None if r.psnr == float("inf") else r.psnr,
            "width": r.width,
            "height": r.height,
            "model": r.model,
            "quality": self.quality,
            "adaptation": self.request.adaptation_name,
            "adaptation_choice": self.choice,
            "rd_saving_pct": round(self.rd_saving_pct, 3),
            "domain": self.domain,
            **({"target": self.target.as_dict()} if self.target is not None else {}),
            **({"roi": self.request.roi.kind} if self.request.roi is not None else {}),
        }


def encode(
    image: ImageInput,
    request: EncodeRequest,
    *,
    registry: Registry | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: ProgressCallback = no_progress,
    device: torch.device | None = None,
) -> EncodeOutcome:
    """Run ``request`` on ``image``: a verified bitstream, never worse in RD cost than the plain encode.

    ``device`` is where an adaptive encode optimises (default: CUDA when present); the entropy
    coding itself always runs in the canonical CPU mode, so the bytes decode everywhere."""
    cfg = request.config()  # an unknown preset fails before the image is even read
    reg = registry or default_registry()
    img = load_input(image, max_pixels)
    roi = None
    if request.roi is not None:
        if cfg.is_plain:
            raise RoiError("a region of interest steers the adaptive encode: give an adaptation preset (e.g. fast)")
        roi = request.roi.weights(img)
    if request.target is not None:
        if request.quality is not None or request.lmbda is not None:
            raise InvalidTargetError("give a target or a quality/lambda, not both")
        base, _ = resolve_encode_model(reg, img, request.model, None, None, request.domain)
        reached = encode_to_target(base, img, request.target, cfg, reg, progress, device, roi=roi)
        return EncodeOutcome(request, reached.adaptive, reached.report)
    base, level = resolve_encode_model(reg, img, request.model, request.quality, request.lmbda, request.domain)
    return EncodeOutcome(request, encode_with_config(base, img, level, cfg, reg, progress, device, roi))
