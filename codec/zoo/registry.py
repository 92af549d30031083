"""The model registry: every base model a bitstream can name, and how to load it.

Three sources, one interface (:class:`~codec.zoo.base.BaseModel`):

* ``default``: the embedded variable-rate model trained by this project (weights in
  ``codec/zoo/weights/``), qualities 1-6 and anything in between; its retired versions stay
  loadable as ``default@<hash16>`` so older bitstreams keep decoding (:mod:`codec.zoo.versions`).
* CompressAI's zoo architectures (``bmshj2018-hyperprior``, ``mbt2018-mean``, ...), qualities
  1-8, loaded the real way with ``compressai.zoo(..., pretrained=True)``. Without internet and
  without the weights in torch's hub cache this fails with one clear :class:`ModelUnavailableError`.
* Checkpoints on disk, registered by name (:meth:`Registry.register_checkpoint`, or the
  ``checkpoints`` a registry is built with: ``NAME=PATH[@ARCH]`` entries, see :func:`parse_checkpoint`).

This module names models and decides which loader (:mod:`codec.zoo.loaders`) makes each; models
load once per process and are reused (:mod:`codec.zoo.cache`, keyed by name and quality). Each has
a hash of its weights *and* probability tables (:mod:`codec.zoo.hashing`); bitstreams carry it, so
a decoder with different weights under the same name refuses instead of producing garbage.

The codec reads no environment: a registry is built from explicit arguments. The service builds
its own from its settings (``UDIC_CHECKPOINTS``, and its storage's ``domains/`` or ``UDIC_DOMAINS_DIR``);
codec callers that pass no registry get :func:`default_registry` (``var/storage/domains``, the
service's default folder, so ``udic train-domain`` and a default service share adapters; no checkpoints).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from codec.domains.modules import bake
from codec.domains.store import AdapterFiles, DomainError, DomainStore, FolderFiles, UnknownDomainError
from codec.models.gained import GainedMeanScaleHyperprior
from codec.zoo.base import BaseModel
from codec.zoo.cache import LRUCache
from codec.zoo.errors import (
    InvalidQualityError,
    ModelError,
    ModelMismatchError,
    UnknownModelError,
)
from codec.zoo.levels import zoo_quality
from codec.zoo.loaders import load_checkpoint, load_gained_file, load_zoo, zoo_quality_range
from codec.zoo.versions import PREVIOUS_DIR, PreviousWeights, split_version, version_mismatch, versioned_name

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_DOMAINS_DIR",
    "DEFAULT_MODEL",
    "SERVICE_ZOO_MODELS",
    "WEIGHTS_DIR",
    "ZOO_MODELS",
    "CheckpointSpec",
    "Registry",
    "default_registry",
    "parse_checkpoint",
    "parse_checkpoints",
    "register_checkpoint",
    "shared_registry",
]

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
#: where domain adapters are stored when the caller names no folder (relative to the working directory):
#: the service's default too (``<UDIC_STORAGE_ROOT>/domains`` with the default ``var/storage``)
DEFAULT_DOMAINS_DIR = Path("var/storage/domains")
#: loaded models a registry keeps (each is tens of MB)
DEFAULT_CAPACITY = 8


@dataclass(frozen=True)
class CheckpointSpec:
    """A checkpoint to register: the name bitstreams use, the file, and (for plain state dicts)
    the CompressAI architecture it fits."""

    name: str
    path: Path
    arch: str | None = None
    lmbda: float | None = None  # the training lambda of a state dict (``udic models add --lambda``)


def parse_checkpoint(item: str) -> CheckpointSpec:
    """``NAME=PATH[@ARCH[@LAMBDA]]``, or ``PATH[@ARCH[@LAMBDA]]`` named by the file's stem.

    The architecture follows ``@``, not ``:``, because ``:`` separates the entries of a list
    (:func:`parse_checkpoints`) and may occur in a path on other systems. ``LAMBDA`` is the
    training lambda of a state dict (what the adaptive encode optimises for).
    """
    name, sep, rest = item.partition("=")
    if not sep:
        name, rest = "", item
    path, _, arch = rest.partition("@")
    arch, _, lam = arch.partition("@")
    try:
        lmbda = float(lam) if lam else None
    except ValueError:
        raise ModelError(f"checkpoint entry {item!r}: the lambda after the second @ is not a number") from None
    return CheckpointSpec(name or Path(path).stem, Path(path), arch or None, lmbda)


def parse_checkpoints(spec: str) -> list[CheckpointSpec]:
    """Entries separated by :data:`os.pathsep` (``:`` on Linux), e.g. the value of ``UDIC_CHECKPOINTS``."""
    return [parse_checkpoint(item) for item in spec.split(os.pathsep) if item]


class Registry:
    """Names -> loaders, with a small LRU of loaded models (thread-safe).

    ``domains_dir`` is the folder of trained domain adapters, or any :class:`~codec.domains.store.AdapterFiles`
    (the service passes its blob storage's) (:attr:`domains`); ``checkpoints`` are
    registered up front, as by :meth:`register_checkpoint`; ``previous_dir`` holds the retired
    versions of the embedded model (:mod:`codec.zoo.versions`; the package's folder by default).
    """

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        domains_dir: Path | str | AdapterFiles | None = None,
        checkpoints: Iterable[CheckpointSpec] = (),
        previous_dir: Path | str | None = None,
    ):
        self.domains = DomainStore(DEFAULT_DOMAINS_DIR if domains_dir is None else domains_dir)
        self.previous = PreviousWeights(PREVIOUS_DIR if previous_dir is None else Path(previous_dir))
        self._cache: LRUCache[tuple[str, object], BaseModel] = LRUCache(capacity)
        self._checkpoints: dict[str, CheckpointSpec] = {}
        self._lock = threading.Lock()
        for spec in checkpoints:
            self.register_checkpoint(spec.name, spec.path, spec.arch, spec.lmbda)

    @property
    def capacity(self) -> int:
        return self._cache.capacity

    def names(self) -> list[str]:
        with self._lock:
            return [DEFAULT_MODEL, *self.previous.names(), *ZOO_MODELS, *sorted(self._checkpoints)]

    def register_checkpoint(self, name: str, path: Path, arch: str | None = None, lmbda: float | None = None) -> None:
        """Name a checkpoint file; a model already loaded under that name is forgotten."""
        if name == DEFAULT_MODEL or name.startswith(f"{DEFAULT_MODEL}@") or name in ZOO_MODELS:
            raise ModelError(f"{name} is a built-in model name")
        with self._lock:
            self._checkpoints[name] = CheckpointSpec(name, Path(path), arch, lmbda)
        self._cache.discard_where(lambda key: key[0] == name)

    def get(self, name: str, quality: int | None = None) -> BaseModel:
        """The loaded model; ``quality`` selects the network for fixed-rate zoo models.

        ``default@<hash16>`` is the current default when the hash is its own (one copy in memory),
        else the kept previous version (:mod:`codec.zoo.versions`).
        """
        version = split_version(name)
        if version is not None:
            current = self.get(DEFAULT_MODEL)
            if version == current.hash.hex():
                return current
            return self._cache.get_or_load((name, 0), lambda: self.previous.load(version))
        key_q = int(quality) if (name in ZOO_MODELS and quality is not None) else 0
        return self._cache.get_or_load((name, key_q), lambda: self._load(name, quality))

    def for_bitstream(self, name: str, weights_hash: bytes, quality: int | None = None) -> tuple[str, BaseModel]:
        """(name to load it by, model) for a bitstream naming ``name`` with ``weights_hash``.

        A file made with a retired default decodes with its kept version; weights this registry
        lacks are refused with the version the file needs (:func:`~codec.zoo.versions.version_mismatch`).
        """
        base = self.get(name, quality)
        if base.hash == weights_hash:
            return name, base
        if name == DEFAULT_MODEL and self.previous.has(weights_hash.hex()):
            versioned = versioned_name(weights_hash)
            return versioned, self.get(versioned)
        raise version_mismatch(name, weights_hash, base.hash, self.previous.hashes())

    def domain_model(
        self, name: str, domain_id: str, expected_hash: bytes | None = None, with_encoder: bool = True
    ) -> BaseModel:
        """The base model with a stored domain adapter baked in (cached like any model; a cached one is
        used only while its adapter is still stored, so a deleted adapter stops decoding everywhere).

        Decoders pass ``with_encoder=False``: they only need (and may only have) the decoder side.
        """
        key = (name, f"domain:{domain_id}:{int(with_encoder)}")
        model = self._cache.get(key)
        if model is not None and not self.domains.exists(domain_id):  # deleted since it was cached
            self.forget_domain(domain_id)
            model = None
        if model is None:
            model = self._bake_domain(name, domain_id, expected_hash, with_encoder)
            self._cache.put(key, model)
        elif expected_hash is not None and model.domain and model.domain[1] != expected_hash:
            raise ModelMismatchError(f"domain adapter {domain_id!r} here has different weights than the bitstream's")
        return model

    def forget_domain(self, domain_id: str) -> None:
        """Drop the models baked with ``domain_id`` from this registry's cache (after the adapter was deleted)."""
        self._cache.discard_where(lambda key: str(key[1]).startswith(f"domain:{domain_id}:"))

    def resolve(self, name: str, quality: float | None = None, lmbda: float | None = None) -> tuple[BaseModel, float]:
        """The model to code with and the exact level: for zoo models the quality picks the network."""
        if name in ZOO_MODELS:
            q = zoo_quality(name, quality, lmbda, zoo_quality_range(name))
            base = self.get(name, q)
            return base, base.level_for(float(q))
        base = self.get(name)
        return base, base.level_for(quality, lmbda)

    def _bake_domain(self, name: str, domain_id: str, expected_hash: bytes | None, with_encoder: bool) -> BaseModel:
        """Load a domain adapter and build it into its base model, after checking it belongs there."""
        base = self.get(name)
        try:
            rec = self.domains.get(domain_id)
        except UnknownDomainError as exc:
            raise UnknownModelError(str(exc)) from None
        if expected_hash is not None and rec.hash != expected_hash:
            raise ModelMismatchError(f"domain adapter {domain_id!r} here has different weights than the bitstream's")
        if rec.base_model != base.name or rec.base_hash != base.hash.hex():
            raise ModelError(f"domain adapter {domain_id!r} was trained for {rec.base_model} with other weights")
        if not isinstance(base.net, GainedMeanScaleHyperprior):
            raise DomainError("domain adapters need a variable-rate base model")
        net = bake(base.net, rec.decoder, rec.encoder if with_encoder else None, rec.rank)
        description = f"{name} + domain adapter {rec.id}"
        domain = (rec.id, rec.hash)
        return BaseModel(base.name, net, base.hash, True, base.quality_range, base.lambdas, description, domain=domain)

    def _load(self, name: str, quality: int | None) -> BaseModel:
        if name == DEFAULT_MODEL:
            return load_gained_file(WEIGHTS_DIR / "default.pt", DEFAULT_MODEL)
        if name in ZOO_MODELS:
            if quality is None:
                lo, hi = zoo_quality_range(name)
                raise InvalidQualityError(f"model {name} needs a quality ({lo}-{hi})")
            return load_zoo(name, int(quality))
        with self._lock:
            spec = self._checkpoints.get(name)
        if spec is not None:
            return load_checkpoint(spec.path, name, spec.arch, spec.lmbda)
        raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(self.names())}")


_shared: dict[tuple[int, AdapterFiles, tuple[CheckpointSpec, ...]], Registry] = {}
_shared_lock = threading.Lock()


def shared_registry(
    capacity: int = DEFAULT_CAPACITY,
    domains_dir: Path | str | AdapterFiles = DEFAULT_DOMAINS_DIR,
    checkpoints: Iterable[CheckpointSpec] = (),
) -> Registry:
    """The process-wide registry for this configuration, built on first use.

    Loaded models are what a process should hold once: everyone who asks with the same arguments
    (the API's routes and decoder, the worker's tasks, the CLI's commands) gets the same registry.
    The arguments come from the caller: the service and the worker pass their settings.
    """
    files = domains_dir if isinstance(domains_dir, AdapterFiles) else FolderFiles(Path(domains_dir))
    key = (capacity, files, tuple(checkpoints))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Registry(*key)
        return _shared[key]


def default_registry() -> Registry:
    """The registry of codec callers that pass none: ``var/storage/domains`` and no checkpoints."""
    return shared_registry()


def register_checkpoint(name: str, path: str | Path, arch: str | None = None, lmbda: float | None = None) -> None:
    """Register a checkpoint with :func:`default_registry` (what ``udic --checkpoint`` does)."""
    default_registry().register_checkpoint(name, Path(path), arch, lmbda)
