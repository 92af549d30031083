"""The job contract between the API (which queues jobs) and the worker (which runs them).

Why a top-level package of its own: both sides must agree on the same things -- what a job asks
for (:mod:`udic_jobs.payloads`), what its record holds and how its state reads
(:mod:`udic_jobs.records`), where records live in Redis (:mod:`udic_jobs.store`, the only module
that knows the key layout) and where uploads and bitstreams are kept (:mod:`udic_jobs.storage`).
Under ``service/`` the worker would import the API's internals; under ``worker/`` the API would
depend on the worker. Here neither does: ``service -> udic_jobs <- worker``, and ``udic_jobs``
imports neither of them, nor ``codec``, nor FastAPI, nor rq (it needs only Redis and pydantic).
The one settings class (``service.core.config``) is shared too, but this package does not read
it: callers pass the values in.
"""

from udic_jobs.payloads import DomainPayload, EncodePayload, JobPayload, parse_payload
from udic_jobs.records import STATES, TERMINAL, JobRecord, new_job_id, now, resolve_state
from udic_jobs.storage import FileSystemStorage, Storage, StorageError, storage_from_settings
from udic_jobs.store import JobStore

__all__ = [
    "STATES",
    "TERMINAL",
    "DomainPayload",
    "EncodePayload",
    "FileSystemStorage",
    "JobPayload",
    "JobRecord",
    "JobStore",
    "Storage",
    "StorageError",
    "new_job_id",
    "now",
    "parse_payload",
    "resolve_state",
    "storage_from_settings",
]
