"""Model registry (see :mod:`codec.zoo.registry`).

Layout: :mod:`~codec.zoo.registry` names models and picks their loader; :mod:`~codec.zoo.loaders`
reads weights; :mod:`~codec.zoo.base` is the loaded model; :mod:`~codec.zoo.levels` turns qualities
into coding levels; :mod:`~codec.zoo.decompress` holds the decode helpers; :mod:`~codec.zoo.hashing`
the weight and symbol hashes; :mod:`~codec.zoo.cache` the LRU; :mod:`~codec.zoo.errors` the errors.
"""

from codec.zoo.base import BaseModel
from codec.zoo.errors import (
    InvalidQualityError,
    ModelError,
    ModelMismatchError,
    ModelUnavailableError,
    UnknownModelError,
)
from codec.zoo.registry import (
    DEFAULT_MODEL,
    CheckpointSpec,
    Registry,
    default_registry,
    parse_checkpoint,
    parse_checkpoints,
    register_checkpoint,
    shared_registry,
)

__all__ = [
    "DEFAULT_MODEL",
    "BaseModel",
    "CheckpointSpec",
    "InvalidQualityError",
    "ModelError",
    "ModelMismatchError",
    "ModelUnavailableError",
    "Registry",
    "UnknownModelError",
    "default_registry",
    "parse_checkpoint",
    "parse_checkpoints",
    "register_checkpoint",
    "shared_registry",
]
