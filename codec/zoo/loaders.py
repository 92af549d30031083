"""Loading weights into a :class:`~codec.zoo.base.BaseModel`, one function per origin.

* :func:`load_gained_file`: the project's exported gained model (fp16 file with probability tables).
* :func:`load_zoo`: a CompressAI zoo network, the real way (``pretrained=True``); offline and
  without the file in torch's hub cache this is one clear :class:`ModelUnavailableError`.
* :func:`load_checkpoint`: a file on disk, either a training checkpoint of the gained model (it
  carries its config) or a state dict of an architecture named by the caller: CompressAI's, or
  ``wacnn`` (:mod:`codec.models.wacnn`, the authors' published checkpoint format).

Loaders know nothing of names or caching (:mod:`codec.zoo.registry` does that).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from codec.models.gained import GainedMeanScaleHyperprior
from codec.models.wacnn import load_published
from codec.zoo.base import BaseModel
from codec.zoo.errors import InvalidQualityError, ModelError, ModelUnavailableError
from codec.zoo.hashing import weights_hash

with warnings.catch_warnings():  # compressai's import warns about optional backends
    warnings.simplefilter("ignore")
    import compressai.zoo as cz
    from compressai.zoo.image import cfgs as _zoo_cfgs
    from compressai.zoo.image import model_architectures as _zoo_archs

#: the lambdas CompressAI trained its MSE zoo models with, by quality 1-8
ZOO_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
#: architectures of ours a state-dict checkpoint can name, next to CompressAI's
OWN_ARCHITECTURES = ("wacnn",)
#: architectures a state-dict checkpoint can name (``NAME=PATH@ARCH``)
ARCHITECTURES: tuple[str, ...] = tuple(sorted([*_zoo_archs, *OWN_ARCHITECTURES]))

_LIKELIHOOD_FLOORS = (
    "entropy_bottleneck.likelihood_lower_bound.bound",
    "gaussian_conditional.likelihood_lower_bound.bound",
)


def zoo_quality_range(name: str) -> tuple[int, int]:
    """The qualities CompressAI publishes weights for, for a zoo model name."""
    return min(_zoo_cfgs[name]), max(_zoo_cfgs[name])


def _keep_likelihood_floors(net: nn.Module, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """``sd`` with the architecture's own likelihood floors (1e-9) instead of the file's.

    They are constants of the entropy models, used only by rate *estimates* (training, adaptation,
    domain=auto), never by entropy coding. An fp16 export flushes 1e-9 to 0, which lets an estimate
    reach -log2(0) = inf and turn an optimisation into NaN; so they are never taken from a file.
    """
    own = net.state_dict()
    return {k: (own[k].clone() if k in _LIKELIHOOD_FLOORS and k in own else v) for k, v in sd.items()}


def _as_float32(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Floating tensors in float32 (exports are fp16; the model computes in float32)."""
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def load_gained_file(path: Path, name: str) -> BaseModel:
    """An exported gained model; it must carry its probability tables (so every decoder has the same)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelUnavailableError(f"model file {path} is missing") from None
    except Exception as exc:  # a corrupt or foreign file
        raise ModelUnavailableError(f"model file {path} could not be read ({exc})") from None
    cfg = state["config"]
    net = GainedMeanScaleHyperprior.from_config(cfg)
    sd = _keep_likelihood_floors(net, _as_float32(state["state_dict"]))
    if "gaussian_conditional._quantized_cdf" not in sd:
        raise ModelUnavailableError(
            f"model file {path} has no probability tables (export it with codec.training.export)"
        )
    net.load_state_dict(sd)
    net.eval().requires_grad_(False)
    lo, hi = 1.0, float(len(cfg["lambdas"]))
    return BaseModel(name, net, weights_hash(net), True, (lo, hi), tuple(cfg["lambdas"]), state.get("description", ""))


def load_zoo(name: str, quality: int) -> BaseModel:
    """CompressAI's pretrained MSE network for one quality (downloaded into torch's hub cache)."""
    lo, hi = zoo_quality_range(name)
    if not (lo <= quality <= hi):
        raise InvalidQualityError(f"quality must be between {lo} and {hi} for model {name}, got {quality}")
    fn = getattr(cz, name.replace("-", "_"))
    try:  # torch.hub writes 'Downloading: ...' to *stdout* even with progress off (stdout may be a bitstream)
        with contextlib.redirect_stdout(io.StringIO()):
            net = fn(quality=quality, metric="mse", pretrained=True, progress=False)
    except Exception as exc:  # URLError, HTTPError, socket errors, ...
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise ModelUnavailableError(
            f"pretrained weights for {name} quality {quality} could not be downloaded ({type(exc).__name__}: "
            f"{exc}); without internet, put the file in {cache} or register a checkpoint"
        ) from None
    net.update(force=True)
    net.eval().requires_grad_(False)
    return BaseModel(
        f"{name}", net, weights_hash(net), False, (float(lo), float(hi)), ZOO_LAMBDAS, f"CompressAI {name}"
    )


def load_checkpoint(path: Path, name: str, arch: str | None, lmbda: float | None = None) -> BaseModel:
    """A checkpoint file: the gained model when it carries a config, else ``arch``'s state dict.

    ``lmbda``: the lambda a state dict was trained for (it does not say), which the adaptive encode
    optimises for; without it such a checkpoint codes, but does not adapt."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise ModelUnavailableError(f"checkpoint {path} is missing") from None
    except Exception as exc:
        raise ModelUnavailableError(f"checkpoint {path} could not be read ({exc})") from None
    if isinstance(state, dict) and "config" in state and ("state_dict" in state or "model" in state):
        return _gained_checkpoint(path, name, state)
    if arch is None or arch not in ARCHITECTURES:
        raise ModelError(f"checkpoint {path} needs an architecture, one of: {', '.join(ARCHITECTURES)}")
    sd = state.get("state_dict", state) if isinstance(state, dict) else state
    try:  # wacnn: the authors' checkpoint as published (a 'state_dict' entry, 'module.' prefixes)
        net = load_published(state) if arch == "wacnn" else _zoo_archs[arch].from_state_dict(sd)
    except Exception as exc:  # torch lists every mismatch on its own line: the first says enough (one line)
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)
        more = f", and {len(lines) - 2} more" if len(lines) > 2 else ""
        raise ModelError(f"checkpoint {path} does not fit architecture {arch} ({detail}{more})") from None
    net.update(force=True)
    net.eval().requires_grad_(False)
    lambdas = (float(lmbda) if lmbda else 0.0,)
    return BaseModel(name, net, weights_hash(net), False, (1.0, 1.0), lambdas, f"{arch} checkpoint {path.name}")


def _gained_checkpoint(path: Path, name: str, state: dict[str, Any]) -> BaseModel:
    """A training checkpoint: tables are rebuilt when it has none (training saves them empty)."""
    cfg = state["config"]
    net = GainedMeanScaleHyperprior.from_config(cfg)
    sd = _keep_likelihood_floors(net, _as_float32(state["state_dict"] if "state_dict" in state else state["model"]))
    try:
        net.load_state_dict(sd, strict=False)
    except RuntimeError as exc:
        first = str(exc).splitlines()[-1].strip()
        raise ModelError(f"checkpoint {path} does not fit its own config ({first})") from None
    if "gaussian_conditional._quantized_cdf" not in sd or sd["gaussian_conditional._quantized_cdf"].numel() == 0:
        net.update(force=True)
    net.eval().requires_grad_(False)
    return BaseModel(name, net, weights_hash(net), True, (1.0, float(len(cfg["lambdas"]))), tuple(cfg["lambdas"]))
