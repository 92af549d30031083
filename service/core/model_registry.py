"""The model registry of a service process (the API or a worker), built from its settings.

Both processes load the same models (the API to validate jobs, list domains and decode; the
worker to encode and train domains) and each should load them once. The codec builds a registry
from explicit arguments and keeps one per configuration per process
(:func:`codec.zoo.shared_registry`); this module is where the ``UDIC_*`` settings become those
arguments, so the API and the worker agree without the worker importing the API's modules.
"""

from __future__ import annotations

from codec.domains.store import AdapterFiles, FolderFiles
from codec.zoo import Registry, parse_checkpoints, shared_registry
from service.core.config import Settings, get_settings
from udic_jobs.storage import StorageAdapterFiles, storage_from_settings

_files: dict[int, StorageAdapterFiles] = {}


def domain_files(settings: Settings) -> AdapterFiles:
    """Where this process keeps domain adapters: ``UDIC_DOMAINS_DIR`` if set (a local folder), else the
    storage's ``domains/`` (the folder's, or the bucket's that every host shares)."""
    if settings.domains_dir is not None:
        return FolderFiles(settings.domains_dir)
    storage = storage_from_settings(settings)  # one instance per configuration, so one key below
    return _files.setdefault(id(storage), StorageAdapterFiles(storage))


def registry_for(settings: Settings) -> Registry:
    """The process-wide registry for these settings (built on first use, then reused)."""
    return shared_registry(
        capacity=settings.decode_cache_models,
        domains_dir=domain_files(settings),
        checkpoints=parse_checkpoints(settings.checkpoints),
    )


def registry() -> Registry:
    """This process's registry, from its settings (``UDIC_DECODE_CACHE_MODELS``,
    the storage's ``domains/`` or ``UDIC_DOMAINS_DIR``, ``UDIC_CHECKPOINTS``)."""
    return registry_for(get_settings())
