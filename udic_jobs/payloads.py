"""What a job asks for: one typed payload per job kind, written by the route that queues the job
and read by the worker task that runs it.

A payload is stored as JSON in the job record's ``options`` field; ``kind`` says which model reads
it back (records written before ``kind`` existed are encode jobs). Each payload names the rq task
that runs it (``TASK``): rq queues functions by dotted path, so the API names the worker's entry
points without importing the worker (``tests/test_job_contract.py`` checks that the names resolve).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

FAILURE_CALLBACK = "worker.tasks.on_job_failure"
# encode options added after records were first stored: left out of the stored options while unused
LATER_OPTIONS = ("target_bytes", "target_bpp", "target_psnr", "roi")


class EncodePayload(BaseModel):
    """An encode job: the options the user gave, validated by the API before the job is queued."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    TASK: ClassVar[str] = "worker.tasks.encode_job"

    model: str = "default"
    quality: float | None = None
    lmbda: float | None = None
    adaptation: str = "none"
    time_budget_s: float | None = Field(None, gt=0)
    domain: str | None = None
    # a rate target instead of a quality (at most one; codec.rate_control checks the values)
    target_bytes: int | None = None
    target_bpp: float | None = None
    target_psnr: float | None = None
    roi: str | None = None  # a region of interest as codec.roi.RoiSpec.to_json() writes it
    kind: Literal["encode"] = "encode"

    @model_serializer(mode="wrap")
    def _without_unused_later_options(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Options added later are dumped only when used, so a job without them stores (and an
        Idempotency-Key fingerprints) exactly what it did before they existed."""
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if not (k in LATER_OPTIONS and v is None)}


class DomainPayload(BaseModel):
    """A domain-adapter training job: the base model, the adapter's name, the step counts and how
    many sample images were stored (under ``storage.sample_key(job_id, i)``).

    ``adaptation`` is always "none": it is kept so that the record reads like an encode job's
    options in the API's job view."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    TASK: ClassVar[str] = "worker.tasks.train_domain_job"

    model: str
    domain_name: str
    steps: int = Field(ge=1)
    stage2_steps: int = Field(ge=0)
    samples: int = Field(ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    adaptation: Literal["none"] = "none"
    kind: Literal["domain"] = "domain"


JobPayload = EncodePayload | DomainPayload


def parse_payload(data: dict[str, Any]) -> JobPayload:
    """The payload stored in a record, as its typed model."""
    if data.get("kind") == "domain":
        return DomainPayload.model_validate(data)
    return EncodePayload.model_validate(data)
