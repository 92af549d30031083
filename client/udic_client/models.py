"""What the service returns, as typed objects (a client-side mirror of the API schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")  # newer servers may add fields


class JobProgress(_Model):
    stage: str
    iteration: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    bpp: float | None = None
    psnr: float | None = None


class TargetReached(_Model):
    """What an encode with a rate target reached: ``status`` is reached, approximate, below-range or
    above-range (then the file is the closest the model makes); ``met``: the file respects the target."""

    kind: str
    value: float
    reached: float
    status: str
    met: bool
    probes: int
    adaptive_runs: int = 0
    search_seconds: float = 0.0
    adaptive_seconds: float = 0.0
    level: float = 0.0


class JobMetrics(_Model):
    bytes: int
    bpp: float
    psnr: float | None = None
    width: int
    height: int
    model: str
    quality: float
    encode_seconds: float
    adaptation: str = "none"
    adaptation_choice: str = "plain"
    rd_saving_pct: float = 0.0
    domain: str | None = None
    target: TargetReached | None = None
    roi: str | None = None  # the region of interest favoured: auto, rects or grid (a mask)


class JobError(_Model):
    type: str
    detail: str


class Job(_Model):
    id: str
    state: str  # queued, running, finished, failed, cancelled
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    filename: str = ""
    width: int = 0
    height: int = 0
    options: dict[str, Any] = {}
    progress: JobProgress | None = None
    metrics: JobMetrics | None = None
    domain: dict[str, Any] | None = None  # domain-training jobs: the trained adapter
    error: JobError | None = None
    cancel_requested: bool = False
    attempts: int = 0
    callback_url: str | None = None
    webhook: dict[str, Any] | None = None  # delivery to callback_url: url, state, attempts
    links: dict[str, str | None] = {}
    notice: str | None = None  # when just submitted: what to expect of the model (slow serial coding)

    @property
    def done(self) -> bool:
        return self.state in ("finished", "failed", "cancelled")


class CompressResult(_Model):
    job: Job
    metrics: JobMetrics
    bitstream: bytes

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            f.write(self.bitstream)
