"""Blob storage for uploads, bitstreams and domain adapters, behind one small interface.

The API stores a job's upload (or a domain job's sample images) under :func:`upload_key` /
:func:`sample_key`; the worker reads them, stores the bitstream under :func:`bitstream_key` and
deletes the upload. Domain adapters live under ``domains/`` (:class:`StorageAdapterFiles`). Each
kind has its own lifetime (:mod:`udic_jobs.storage.keys`), enforced by
:func:`udic_jobs.storage.sweep.sweep` (not imported here: it reads job records, which import the keys).

One setting chooses the backend (:func:`storage_from_settings`): ``UDIC_STORAGE_URL`` empty or
``file:///path`` for a folder (``UDIC_STORAGE_ROOT`` when empty), ``s3://bucket/prefix`` for an
S3-compatible bucket -- then a worker on another host needs only Redis and the bucket.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from udic_jobs.storage.base import BlobInfo, Storage, StorageError, check_key
from udic_jobs.storage.domains import StorageAdapterFiles
from udic_jobs.storage.filesystem import FileSystemStorage
from udic_jobs.storage.keys import (
    BITSTREAMS,
    DOMAIN_REFS,
    DOMAINS,
    EXPIRING,
    UPLOADS,
    bitstream_key,
    domain_ref_key,
    domain_refs_prefix,
    input_keys,
    sample_key,
    upload_key,
)

__all__ = [
    "BITSTREAMS",
    "DOMAINS",
    "DOMAIN_REFS",
    "EXPIRING",
    "UPLOADS",
    "BlobInfo",
    "FileSystemStorage",
    "Storage",
    "StorageAdapterFiles",
    "StorageError",
    "bitstream_key",
    "check_key",
    "domain_ref_key",
    "domain_refs_prefix",
    "input_keys",
    "open_storage",
    "sample_key",
    "storage_from_settings",
    "upload_key",
]


class _StorageSettings(Protocol):
    @property
    def storage_root(self) -> Path: ...
    @property
    def storage_url(self) -> str: ...
    @property
    def s3_endpoint_url(self) -> str: ...


def storage_from_settings(settings: _StorageSettings) -> Storage:
    """The storage these settings name (one instance per configuration per process: boto3 clients
    are thread-safe and worth reusing)."""
    return open_storage(settings.storage_url, Path(settings.storage_root), settings.s3_endpoint_url)


@functools.lru_cache(maxsize=8)
def open_storage(url: str, root: Path, endpoint_url: str = "") -> Storage:
    """``url`` empty: a folder at ``root``; ``file:///path``: that folder; ``s3://bucket/prefix``: the bucket."""
    scheme = urlparse(url).scheme if url else ""
    if scheme in ("", "file"):
        return FileSystemStorage(Path(urlparse(url).path) if url else root)
    if scheme == "s3":
        from udic_jobs.storage.s3 import S3Storage  # boto3 is imported only where a bucket is used

        return S3Storage(url, endpoint_url or None)
    raise StorageError(f"UDIC_STORAGE_URL {url!r}: use file:///path or s3://bucket/prefix")
