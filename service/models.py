"""Pydantic schemas of the public API (they generate the OpenAPI document)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from codec.adaptation.config import PRESET_NAMES

JobState = Literal["queued", "running", "finished", "failed", "cancelled"]
#: spelled out for the OpenAPI document and the type checker; a test holds it equal to PRESET_NAMES
Adaptation = Literal["none", "fast", "fast+qstep", "balanced", "paper", "max"]
ADAPTATIONS: tuple[str, ...] = PRESET_NAMES


class JobOptions(BaseModel):
    model: str = Field("default", description="base model name (GET /v1/models)")
    quality: float | None = Field(None, description="1-6 for the default model (fractions allowed), 1-8 for zoo models")
    lmbda: float | None = Field(None, description="rate-distortion lambda instead of a quality (variable-rate models)")
    adaptation: Adaptation = Field(
        "none",
        description=(
            "content adaptation preset: none (fast, plain), fast, fast+qstep (fast with a per-image quantisation "
            "step), balanced, paper (001's 2000+500 steps), max"
        ),
    )
    time_budget_s: float | None = Field(None, gt=0, description="wall-clock budget for the encode")
    domain: str | None = Field(None, description="a trained domain adapter id, or 'auto'")
    target_bytes: int | None = Field(None, description="file size asked for instead of a quality")
    target_bpp: float | None = Field(None, description="bits per pixel asked for instead of a quality")
    target_psnr: float | None = Field(None, description="PSNR (dB, at least) asked for instead of a quality")
    kind: Literal["encode", "domain"] = "encode"


class Progress(BaseModel):
    stage: str
    iteration: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    bpp: float | None = None
    psnr: float | None = None


class TargetMetrics(BaseModel):
    """What an encode with a rate target reached (codec.rate_control.TargetReport)."""

    kind: str = Field(description="bytes, bpp or psnr")
    value: float = Field(description="the target asked for")
    reached: float = Field(description="the file's value in the target's unit")
    status: str = Field(
        description="reached; approximate (probe limit); below-range / above-range: the target needs less / more "
        "than the model's lowest / highest rate, so the file is the closest one"
    )
    met: bool = Field(description="the file respects the target: size not over it, PSNR not under it")
    probes: int = Field(description="plain encodes the level search ran")
    adaptive_runs: int = Field(0, description="adaptive encodes run (2 when it re-aimed)")
    search_seconds: float = 0.0
    adaptive_seconds: float = 0.0
    level: float = Field(description="the rate level of the file (quality - 1)")


class Metrics(BaseModel):
    bytes: int
    bpp: float
    psnr: float | None = Field(None, description="dB on 8-bit RGB; null when lossless")
    width: int
    height: int
    model: str
    quality: float
    encode_seconds: float
    adaptation: str = "none"
    adaptation_choice: str = Field(
        "plain", description="what the adaptive encode kept: plain, latents, latents+adapters"
    )
    rd_saving_pct: float = Field(0.0, description="RD cost saved against the plain encode, percent")
    domain: str | None = Field(None, description="the domain adapter the encode used (chosen when 'auto')")
    target: TargetMetrics | None = Field(None, description="with target_bytes, target_bpp or target_psnr")
    roi: str | None = Field(None, description="the region of interest favoured: auto, rects or grid (a mask)")


class ErrorInfo(BaseModel):
    type: str
    detail: str


class DomainInfo(BaseModel):
    id: str
    name: str
    base_model: str
    hash: str
    gain_pct: float = Field(description="RD-cost saving on the held-out sample images, percent")
    created: float
    n_train: int
    n_val: int


class DomainList(BaseModel):
    domains: list[DomainInfo]


class WebhookAttempt(BaseModel):
    at: float
    status: int | None = Field(description="the receiver's HTTP status; null when none came (timeout, refused)")
    error: str = ""
    ms: int


class WebhookInfo(BaseModel):
    url: str
    state: Literal["pending", "delivered", "failed"]
    attempts: list[WebhookAttempt] = []


class JobLinks(BaseModel):
    self: str
    domain: str | None = None
    bitstream: str | None = None
    image: str | None = None


class JobView(BaseModel):
    id: str
    state: JobState
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    filename: str = ""
    width: int = 0
    height: int = 0
    upload_bytes: int = 0
    options: JobOptions
    progress: Progress | None = None
    metrics: Metrics | None = None
    domain: DomainInfo | None = Field(None, description="for domain-training jobs: the trained adapter")
    error: ErrorInfo | None = None
    cancel_requested: bool = False
    attempts: int = 0
    callback_url: str | None = None
    webhook: WebhookInfo | None = Field(None, description="delivery of the job's end event to callback_url")
    links: JobLinks
    notice: str | None = Field(
        None, description="in the answer to POST /v1/jobs: what to expect of the model up front (slow serial coding)"
    )


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(
        None, description="pass as ?cursor= for the next (older) page; null when there is none"
    )


class ModelInfo(BaseModel):
    name: str
    available: bool
    qualities: tuple[float, float] | None = None
    hash: str | None = None
    detail: str = ""
    notice: str | None = Field(None, description="what to expect of the model (slow serial coding), if anything")


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    redis: bool
    storage: bool
