"""The model registry of a service process (the API or a worker), built from its settings.

Both processes load the same models (the API to validate jobs, list domains and decode; the
worker to encode and train domains) and each should load them once. The codec builds a registry
from explicit arguments and keeps one per configuration per process
(:func:`codec.zoo.shared_registry`); this module is where the ``UDIC_*`` settings become those
arguments, so the API and the worker agree without the worker importing the API's modules.
"""

from __future__ import annotations

from codec.zoo import Registry, parse_checkpoints, shared_registry
from service.core.config import Settings, get_settings


def registry_for(settings: Settings) -> Registry:
    """The process-wide registry for these settings (built on first use, then reused)."""
    return shared_registry(
        capacity=settings.decode_cache_models,
        domains_dir=settings.domains_path,
        checkpoints=parse_checkpoints(settings.checkpoints),
    )


def registry() -> Registry:
    """This process's registry, from its settings (``UDIC_DECODE_CACHE_MODELS``,
    ``UDIC_DOMAINS_DIR`` or ``<UDIC_STORAGE_ROOT>/domains``, ``UDIC_CHECKPOINTS``)."""
    return registry_for(get_settings())
