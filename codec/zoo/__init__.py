"""Model registry (see :mod:`codec.zoo.registry`)."""

from codec.zoo.registry import (
    DEFAULT_MODEL,
    BaseModel,
    InvalidQualityError,
    ModelError,
    ModelMismatchError,
    ModelUnavailableError,
    Registry,
    UnknownModelError,
    default_registry,
    register_checkpoint,
)

__all__ = [
    "DEFAULT_MODEL",
    "BaseModel",
    "InvalidQualityError",
    "ModelError",
    "ModelMismatchError",
    "ModelUnavailableError",
    "Registry",
    "UnknownModelError",
    "default_registry",
    "register_checkpoint",
]
