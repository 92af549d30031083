"""What can go wrong when naming or loading a model.

Every error is a :class:`ValueError` with a ``kind``: the service turns ``kind`` into the problem type
of its 4xx answer and the CLI into an exit code, so neither has to know the subclasses.
"""

from __future__ import annotations


class ModelError(ValueError):
    kind = "model-error"


class UnknownModelError(ModelError):
    kind = "unknown-model"


class ModelUnavailableError(ModelError):
    """The model exists but its weights cannot be had here (offline, missing file)."""

    kind = "model-unavailable"


class ModelMismatchError(ModelError):
    """A bitstream names weights (or a domain adapter) that differ from the ones loaded here."""

    kind = "model-mismatch"


class InvalidQualityError(ModelError):
    kind = "invalid-quality"
