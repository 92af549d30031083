"""Which stored bitstreams need a domain adapter: the refs the worker writes before each bitstream
coded with one (``refs/{domain}/{job}``, :func:`~udic_jobs.storage.keys.domain_ref_key`).

Kept in the storage, not in Redis, so they live exactly as the bitstreams do (same kind of
lifetime, same sweep, same bucket) and no Redis loss can make an adapter look unused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from udic_jobs.storage.base import Storage
from udic_jobs.storage.keys import domain_refs_prefix


@dataclass(frozen=True)
class DomainUse:
    """The unexpired bitstreams coded with an adapter: how many, and when the last of them expires."""

    bitstreams: int
    until: float


def domain_use(storage: Storage, domain_id: str, retention_s: float, now: float | None = None) -> DomainUse:
    now = time.time() if now is None else now
    live = [b.modified for b in storage.list(domain_refs_prefix(domain_id)) if now - b.modified <= retention_s]
    return DomainUse(len(live), max(live) + retention_s if live else now)


def drop_refs(storage: Storage, domain_id: str) -> None:
    """Forget the (expired) refs of a deleted adapter."""
    for b in list(storage.list(domain_refs_prefix(domain_id))):
        storage.delete(b.key)
