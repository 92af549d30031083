"""The model registry: every base model a bitstream can name, and how to load it.

Three sources, one interface (:class:`BaseModel`):

* ``default``: the embedded variable-rate model trained by this project (weights in
  ``codec/zoo/weights/``), qualities 1-6 and anything in between.
* CompressAI's zoo architectures (``bmshj2018-hyperprior``, ``mbt2018-mean``, ...), qualities
  1-8, loaded the real way with ``compressai.zoo(..., pretrained=True)``. Without internet and
  without the weights in torch's hub cache this fails with one clear :class:`ModelUnavailableError`.
* Checkpoints on disk, registered by name (:func:`register_checkpoint`, or ``UDIC_CHECKPOINTS``).

Models load once per process and are reused (an LRU cache keyed by name and quality). Each has a
hash of its weights *and* probability tables; bitstreams carry it, so a decoder with different
weights under the same name refuses instead of producing garbage.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import compressai.zoo as cz
    from compressai.zoo.image import cfgs as _zoo_cfgs
    from compressai.zoo.image import model_architectures as _zoo_archs

from codec.models.gained import GainedMeanScaleHyperprior

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "default"
ZOO_MODELS = (
    "bmshj2018-hyperprior",
    "mbt2018-mean",
    "bmshj2018-factorized",
    "mbt2018",
    "cheng2020-anchor",
    "cheng2020-attn",
)
#: zoo models that a single image encodes fast enough for the service (no serial context model)
SERVICE_ZOO_MODELS = ("bmshj2018-hyperprior", "mbt2018-mean")


class ModelError(ValueError):
    kind = "model-error"


class UnknownModelError(ModelError):
    kind = "unknown-model"


class ModelUnavailableError(ModelError):
    """The model exists but its weights cannot be had here (offline, missing file)."""

    kind = "model-unavailable"


class ModelMismatchError(ModelError):
    kind = "model-mismatch"


class InvalidQualityError(ModelError):
    kind = "invalid-quality"


def weights_hash(module: nn.Module) -> bytes:
    """8-byte BLAKE2b of every parameter and buffer (probability tables included), in float32."""
    h = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        if t.is_floating_point():
            t = t.float()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes())
    return h.digest()


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

    # --- quality <-> level -----------------------------------------------------------
    def level_for(self, quality: float | None = None, lmbda: float | None = None) -> float:
        """The level to code at, from a quality (1-based) or a lambda; exact float32 value."""
        lo, hi = self.quality_range
        if quality is not None and lmbda is not None:
            raise InvalidQualityError("give a quality or a lambda, not both")
        if lmbda is not None:
            if not lmbda > 0:
                raise InvalidQualityError(f"lambda must be positive, got {lmbda}")
            if not self.variable_rate:
                raise InvalidQualityError(f"model {self.name} has fixed rates; give a quality {lo:g}-{hi:g}")
            level = self.net.level_for_lambda(lmbda)  # type: ignore[operator]
        else:
            q = (lo + hi) / 2 if quality is None else float(quality)
            if not (lo <= q <= hi):
                raise InvalidQualityError(f"quality must be between {lo:g} and {hi:g} for model {self.name}, got {q:g}")
            if not self.variable_rate and q != int(q):
                raise InvalidQualityError(f"model {self.name} takes whole qualities {lo:g}-{hi:g}, got {q:g}")
            level = q - 1.0
        return struct.unpack("<f", struct.pack("<f", level))[0]

    def lmbda_at(self, level: float) -> float:
        if self.variable_rate:
            return float(self.net.lmbda(torch.tensor([level])).item())  # type: ignore[operator]
        return self.lambdas[int(level)]

    def level_tensor(self, level: float) -> Tensor:
        return torch.tensor([level], dtype=torch.float32)

    # --- coding (called under canonical_compute) --------------------------------------
    def compress(self, x: Tensor, level: float) -> dict:
        """``{"strings", "shape", "symbols"}``; symbols (for the symbol hash) may be None."""
        if self.variable_rate:
            return self.net.compress(x, self.level_tensor(level))  # type: ignore[operator]
        out = dict(self.net.compress(x))  # type: ignore[operator]
        out["symbols"] = None
        if _is_plain_hyperprior(self.net):
            out["symbols"] = _hyperprior_decompress(self.net, out["strings"], tuple(out["shape"]))[1]
        return out

    def decompress(
        self, strings: list[list[bytes]], shape: tuple[int, int], level: float
    ) -> tuple[Tensor, list[Tensor] | None]:
        """(x_hat, decoded symbols or None). Strings are zero-padded so that no input, however
        crafted, makes the rANS decoder read past its buffer."""
        strings = _padded(self.net, strings, shape)
        if self.variable_rate:
            out = self.net.decompress(strings, shape, self.level_tensor(level))  # type: ignore[operator]
            return out["x_hat"], out["symbols"]
        if _is_plain_hyperprior(self.net):
            return _hyperprior_decompress(self.net, strings, shape)
        return self.net.decompress(strings, shape)["x_hat"], None  # type: ignore[operator]


def _padded(net: nn.Module, strings: list[list[bytes]], shape: tuple[int, int]) -> list[list[bytes]]:
    h, w = shape
    m = int(getattr(net, "M", 320))
    n = int(getattr(net, "Nh", getattr(net, "N", 192)))
    y_pad = bytes(8 * m * h * w * 16 + 64)
    z_pad = bytes(8 * n * h * w + 64)
    return [[s + y_pad for s in strings[0]], [s + z_pad for s in strings[1]], *strings[2:]]


def _is_plain_hyperprior(net: nn.Module) -> bool:
    return type(net).__name__ in ("ScaleHyperprior", "MeanScaleHyperprior")


def _hyperprior_decompress(
    net: nn.Module, strings: list[list[bytes]], shape: tuple[int, int]
) -> tuple[Tensor, list[Tensor]]:
    """CompressAI's (Mean)ScaleHyperprior.decompress, also returning the integer symbols."""
    eb, gc = net.entropy_bottleneck, net.gaussian_conditional  # type: ignore[union-attr]
    z_hat = eb.decompress(strings[1], shape)
    params = net.h_s(z_hat)  # type: ignore[operator]
    means = None
    if type(net).__name__ == "MeanScaleHyperprior":
        params, means = params.chunk(2, 1)
    indexes = gc.build_indexes(params)
    y_sym = gc.decompress(strings[0], indexes, z_hat.dtype)
    y_hat = y_sym + means if means is not None else y_sym
    x_hat = net.g_s(y_hat).clamp_(0, 1)  # type: ignore[operator]
    z_sym = torch.round(z_hat - eb._get_medians().reshape(1, -1, 1, 1)).to(torch.int32)
    return x_hat, [y_sym.to(torch.int32), z_sym]


def symbols_hash(symbols: list[Tensor]) -> bytes:
    """4-byte hash of the coded integer symbols: decoders check it to catch a desynchronised
    entropy model (different platform) or a crafted payload, instead of returning garbage."""
    h = hashlib.blake2b(digest_size=4)
    for t in symbols:
        h.update(t.to(torch.int32).contiguous().numpy().tobytes())
    return h.digest()


# ---------------------------------------------------------------------- loaders
_LIKELIHOOD_FLOORS = (
    "entropy_bottleneck.likelihood_lower_bound.bound",
    "gaussian_conditional.likelihood_lower_bound.bound",
)


def _keep_likelihood_floors(net: nn.Module, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """``sd`` with the architecture's own likelihood floors (1e-9) instead of the file's.

    They are constants of the entropy models, used only by rate *estimates* (training, adaptation,
    domain=auto), never by entropy coding. An fp16 export flushes 1e-9 to 0, which lets an estimate
    reach -log2(0) = inf and turn an optimisation into NaN; so they are never taken from a file.
    """
    own = net.state_dict()
    return {k: (own[k].clone() if k in _LIKELIHOOD_FLOORS and k in own else v) for k, v in sd.items()}


def _load_gained_file(path: Path, name: str) -> BaseModel:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelUnavailableError(f"model file {path} is missing") from None
    except Exception as exc:  # a corrupt or foreign file
        raise ModelUnavailableError(f"model file {path} could not be read ({exc})") from None
    cfg = state["config"]
    net = GainedMeanScaleHyperprior.from_config(cfg)
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in state["state_dict"].items()}
    sd = _keep_likelihood_floors(net, sd)
    if "gaussian_conditional._quantized_cdf" not in sd:
        raise ModelUnavailableError(
            f"model file {path} has no probability tables (export it with codec.training.export)"
        )
    net.load_state_dict(sd)
    net.eval().requires_grad_(False)
    lo, hi = 1.0, float(len(cfg["lambdas"]))
    return BaseModel(name, net, weights_hash(net), True, (lo, hi), tuple(cfg["lambdas"]), state.get("description", ""))


def _load_zoo(name: str, quality: int) -> BaseModel:
    lo, hi = min(_zoo_cfgs[name]), max(_zoo_cfgs[name])
    if not (lo <= quality <= hi):
        raise InvalidQualityError(f"quality must be between {lo} and {hi} for model {name}, got {quality}")
    fn = getattr(cz, name.replace("-", "_"))
    try:
        net = fn(quality=quality, metric="mse", pretrained=True, progress=False)
    except Exception as exc:  # URLError, HTTPError, socket errors, ...
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise ModelUnavailableError(
            f"pretrained weights for {name} quality {quality} could not be downloaded ({type(exc).__name__}: "
            f"{exc}); without internet, put the file in {cache} or register a checkpoint"
        ) from None
    net.update(force=True)
    net.eval().requires_grad_(False)
    from compressai.zoo.image import model_urls  # noqa: F401  (documents where weights come from)

    lambdas = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
    return BaseModel(f"{name}", net, weights_hash(net), False, (float(lo), float(hi)), lambdas, f"CompressAI {name}")


def _load_checkpoint(path: Path, name: str, arch: str | None) -> BaseModel:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise ModelUnavailableError(f"checkpoint {path} is missing") from None
    except Exception as exc:
        raise ModelUnavailableError(f"checkpoint {path} could not be read ({exc})") from None
    if isinstance(state, dict) and "config" in state and ("state_dict" in state or "model" in state):
        cfg = state["config"]
        net = GainedMeanScaleHyperprior.from_config(cfg)
        sd = state.get("state_dict", state.get("model"))
        sd = _keep_likelihood_floors(net, {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()})
        try:
            net.load_state_dict(sd, strict=False)
        except RuntimeError as exc:
            first = str(exc).splitlines()[-1].strip()
            raise ModelError(f"checkpoint {path} does not fit its own config ({first})") from None
        if "gaussian_conditional._quantized_cdf" not in sd or sd["gaussian_conditional._quantized_cdf"].numel() == 0:
            net.update(force=True)
        net.eval().requires_grad_(False)
        return BaseModel(name, net, weights_hash(net), True, (1.0, float(len(cfg["lambdas"]))), tuple(cfg["lambdas"]))
    if arch is None or arch not in _zoo_archs:
        raise ModelError(f"checkpoint {path} needs an architecture, one of: {', '.join(sorted(_zoo_archs))}")
    sd = state.get("state_dict", state) if isinstance(state, dict) else state
    try:
        net = _zoo_archs[arch].from_state_dict(sd)
    except Exception as exc:
        raise ModelError(f"checkpoint {path} does not fit architecture {arch} ({exc})") from None
    net.update(force=True)
    net.eval().requires_grad_(False)
    return BaseModel(name, net, weights_hash(net), False, (1.0, 1.0), (0.0,), f"{arch} checkpoint {path.name}")


# ---------------------------------------------------------------------- registry
@dataclass(frozen=True)
class _CheckpointEntry:
    path: Path
    arch: str | None


class Registry:
    """Names -> loaders, with a small LRU of loaded models (thread-safe)."""

    def __init__(self, capacity: int = 8, domains_dir: Path | None = None):
        from codec.domains.store import DomainStore

        self.capacity = capacity
        self.domains = DomainStore(domains_dir or Path(os.environ.get("UDIC_DOMAINS_DIR", "var/domains")))
        self._cache: OrderedDict[tuple[str, object], BaseModel] = OrderedDict()
        self._checkpoints: dict[str, _CheckpointEntry] = {}
        self._lock = threading.RLock()
        for item in filter(None, os.environ.get("UDIC_CHECKPOINTS", "").split(os.pathsep)):
            # NAME=PATH[:ARCH] or PATH (name = file stem)
            name, _, rest = item.partition("=") if "=" in item else (Path(item).stem, "", item)
            path, _, arch = rest.partition("@")
            self.register_checkpoint(name, Path(path), arch or None)

    def names(self) -> list[str]:
        return [DEFAULT_MODEL, *ZOO_MODELS, *sorted(self._checkpoints)]

    def register_checkpoint(self, name: str, path: Path, arch: str | None = None) -> None:
        if name == DEFAULT_MODEL or name in ZOO_MODELS:
            raise ModelError(f"{name} is a built-in model name")
        with self._lock:
            self._checkpoints[name] = _CheckpointEntry(Path(path), arch)
            for key in [k for k in self._cache if k[0] == name]:
                del self._cache[key]

    def get(self, name: str, quality: int | None = None) -> BaseModel:
        """The loaded model; ``quality`` selects the network for fixed-rate zoo models."""
        key_q = int(quality) if (name in ZOO_MODELS and quality is not None) else 0
        key = (name, key_q)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            model = self._load(name, quality)
            self._cache[key] = model
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
            return model

    def domain_model(
        self, name: str, domain_id: str, expected_hash: bytes | None = None, with_encoder: bool = True
    ) -> BaseModel:
        """The base model with a stored domain adapter baked in (cached like any model).

        Decoders pass ``with_encoder=False``: they only need (and may only have) the decoder side.
        """
        from codec.domains.modules import bake
        from codec.domains.store import DomainError, UnknownDomainError

        key = (name, f"domain:{domain_id}:{int(with_encoder)}")
        with self._lock:
            if key in self._cache:
                model = self._cache[key]
                if expected_hash is not None and model.domain and model.domain[1] != expected_hash:
                    raise ModelMismatchError(
                        f"domain adapter {domain_id!r} here has different weights than the bitstream's"
                    )
                self._cache.move_to_end(key)
                return model
        base = self.get(name)
        try:
            rec = self.domains.get(domain_id)
        except UnknownDomainError as exc:
            raise UnknownModelError(str(exc)) from None
        if expected_hash is not None and rec.hash != expected_hash:
            raise ModelMismatchError(f"domain adapter {domain_id!r} here has different weights than the bitstream's")
        if rec.base_model != name or rec.base_hash != base.hash.hex():
            raise ModelError(f"domain adapter {domain_id!r} was trained for {rec.base_model} with other weights")
        if not isinstance(base.net, GainedMeanScaleHyperprior):
            raise DomainError("domain adapters need a variable-rate base model")
        net = bake(base.net, rec.decoder, rec.encoder if with_encoder else None, rec.rank)
        model = BaseModel(
            name,
            net,
            base.hash,
            True,
            base.quality_range,
            base.lambdas,
            f"{name} + domain adapter {rec.id}",
            domain=(rec.id, rec.hash),
        )
        with self._lock:
            self._cache[key] = model
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return model

    def resolve(self, name: str, quality: float | None = None, lmbda: float | None = None) -> tuple[BaseModel, float]:
        """The model to code with and the exact level: for zoo models the quality picks the network."""
        if name in ZOO_MODELS:
            lo, hi = min(_zoo_cfgs[name]), max(_zoo_cfgs[name])
            if lmbda is not None:
                raise InvalidQualityError(f"model {name} has fixed rates; give a quality {lo}-{hi}")
            q = (lo + hi) // 2 if quality is None else quality
            if float(q) != int(q):
                raise InvalidQualityError(f"model {name} takes whole qualities {lo}-{hi}, got {q:g}")
            base = self.get(name, int(q))
            return base, base.level_for(float(q))
        base = self.get(name)
        return base, base.level_for(quality, lmbda)

    def _load(self, name: str, quality: int | None) -> BaseModel:
        if name == DEFAULT_MODEL:
            return _load_gained_file(WEIGHTS_DIR / "default.pt", DEFAULT_MODEL)
        if name in ZOO_MODELS:
            if quality is None:
                raise InvalidQualityError(
                    f"model {name} needs a quality ({min(_zoo_cfgs[name])}-{max(_zoo_cfgs[name])})"
                )
            return _load_zoo(name, int(quality))
        if name in self._checkpoints:
            entry = self._checkpoints[name]
            return _load_checkpoint(entry.path, name, entry.arch)
        raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(self.names())}")


_default_registry: Registry | None = None
_registry_lock = threading.Lock()


def default_registry() -> Registry:
    global _default_registry
    with _registry_lock:
        if _default_registry is None:
            _default_registry = Registry()
        return _default_registry


def register_checkpoint(name: str, path: str | Path, arch: str | None = None) -> None:
    default_registry().register_checkpoint(name, Path(path), arch)
