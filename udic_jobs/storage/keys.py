"""The kinds of stored blobs, where each kind's keys lie, and how long each kind lives.

=============  ==========================================  ================================================
kind           keys                                        lifetime
=============  ==========================================  ================================================
uploads        ``uploads/{job}`` (``uploads/{job}/{i}``)    until the job ends (the worker deletes them; the
                                                           sweep removes those of ended or expired jobs)
bitstreams     ``bitstreams/{job}.udic``                   the retention (``UDIC_RETENTION_S``)
domain refs    ``refs/{domain}/{job}`` (empty)             the retention: "this bitstream needs that adapter"
domains        ``domains/{domain}.pt``                     until deleted (``DELETE /v1/domains/{id}``);
                                                           never swept
=============  ==========================================  ================================================
"""

from __future__ import annotations

from udic_jobs.payloads import DomainPayload, JobPayload

UPLOADS = "uploads/"
BITSTREAMS = "bitstreams/"
DOMAIN_REFS = "refs/"
DOMAINS = "domains/"
#: the kinds a retention sweep may delete by age (never DOMAINS)
EXPIRING = (UPLOADS, BITSTREAMS, DOMAIN_REFS)


def upload_key(job_id: str) -> str:
    """An encode job's uploaded image; a domain job's samples lie under it (:func:`sample_key`)."""
    return f"{UPLOADS}{job_id}"


def sample_key(job_id: str, index: int) -> str:
    return f"{upload_key(job_id)}/{index}"


def bitstream_key(job_id: str) -> str:
    return f"{BITSTREAMS}{job_id}.udic"


def domain_ref_key(domain_id: str, job_id: str) -> str:
    """Written (empty) before a bitstream coded with ``domain_id``: the adapter is in use until it expires."""
    return f"{domain_refs_prefix(domain_id)}{job_id}"


def domain_refs_prefix(domain_id: str) -> str:
    return f"{DOMAIN_REFS}{domain_id}/"


def job_of_upload(key: str) -> str:
    """The job id an upload key belongs to (``uploads/{job}`` or ``uploads/{job}/{i}``)."""
    return key[len(UPLOADS) :].split("/", 1)[0]


def input_keys(job_id: str, payload: JobPayload) -> list[str]:
    """The blobs the API stored for a job: what the worker reads, and deletes once it is done."""
    if isinstance(payload, DomainPayload):
        return [sample_key(job_id, i) for i in range(payload.samples)]
    return [upload_key(job_id)]
