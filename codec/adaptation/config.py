"""What an adaptive encode may do (:class:`AdaptConfig`) and the named presets: the one list of them.

The CLI's ``--adapt`` choices, the worker's ``adaptation`` option and the evaluation scripts all read
:data:`PRESET_NAMES` / :data:`PRESETS` from here. This module imports no torch, so the CLI can build
its argument parser (and ``--help``) without loading the codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    qstep: bool = False  # optimise a per-image y quantisation step with the latents (seed 003; codec.adaptation.qstep)
    qstep_lr: float = 1e-2  # Adam learning rate of log2 of that step
    lmbda: float | None = None  # RD lambda of the refinement; None: the level's own (beyond the levels: with qstep)
    amp: bool = True  # bf16 autocast of the synthesis where the device runs bf16 natively (rates stay fp32)
    push_adapters: bool = True  # one adapter before a linear output layer: train it through that layer's
    # low-rank image (codec.adaptation.stages._adapted_tail); False runs the layers (benchmarks compare)
    subpixel: bool = True  # on the CPU, the optimisation runs the synthesis' last layer as a sub-pixel
    # convolution (codec.subpixel: same function, faster); the final coding stays canonical
    seed: int = 0

    @property
    def is_plain(self) -> bool:
        """No stage to run: the encode is the plain one (and works with any model, not only gained ones)."""
        return self.latent == "none" and self.decoder == "none"


PRESETS: dict[str, AdaptConfig] = {
    "none": AdaptConfig(latent="none", latent_iters=0, decoder="none", decoder_iters=0),
    "fast": AdaptConfig(
        latent="sga", latent_iters=100, latent_lr=2e-2, decoder="adapters", decoder_iters=100, decoder_lr=5e-3
    ),
    "fast+qstep": AdaptConfig(
        latent="sga",
        latent_iters=100,
        latent_lr=2e-2,
        decoder="adapters",
        decoder_iters=100,
        decoder_lr=5e-3,
        qstep=True,
    ),
    "balanced": AdaptConfig(
        latent="dr", latent_iters=600, latent_lr=3e-3, decoder="adapters", decoder_iters=200, decoder_lr=3e-3
    ),
    "paper": AdaptConfig(latent="sga", latent_iters=2000, latent_lr=1e-3, decoder="adapters", decoder_iters=500),
    "max": AdaptConfig(latent="dr", latent_iters=2000, latent_lr=1e-3, decoder="adapters", decoder_iters=500),
}
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
