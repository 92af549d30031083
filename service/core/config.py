"""All configuration, in one place: environment variables with the ``UDIC_`` prefix.

Example: ``UDIC_REDIS_URL=redis://127.0.0.1:6379/0 UDIC_STORAGE_ROOT=/data udic-api``.

This is the only place that reads ``UDIC_*`` for the API, the worker and the local stack
(``service.stack``). The codec reads no environment: the processes pass these values to it
(the model registry: :mod:`service.core.model_registry`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UDIC_", env_file=None, extra="ignore")

    # --- infrastructure
    redis_url: str = "redis://127.0.0.1:6379/0"
    storage_root: Path = Path("var/storage")
    storage_url: str = Field(
        "", description="empty: the folder UDIC_STORAGE_ROOT; file:///path; or s3://bucket/prefix (udic_jobs.storage)"
    )
    s3_endpoint_url: str = Field("", description="S3-compatible endpoint (MinIO...); empty: AWS_ENDPOINT_URL or AWS")
    queue_name: str = "udic-encode"
    domains_dir: Path | None = Field(
        None, description="a local folder for domain adapters; default: the storage's domains/ (every host sees it)"
    )
    key_prefix: str = "udic"

    # --- limits on what users send
    max_upload_bytes: int = Field(50 * 1024 * 1024, gt=0, description="request bodies above this get 413")
    max_pixels: int = Field(50_000_000, gt=0, description="images above this many pixels get 422")
    max_bitstream_bytes: int = Field(50 * 1024 * 1024, gt=0)

    # --- jobs
    default_model: str = "default"
    job_timeout_s: int = Field(3600, gt=0, description="hard limit on one encode job")
    result_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="how long finished jobs and bitstreams are kept")
    failure_ttl_s: int = Field(7 * 24 * 3600, gt=0)
    retention_s: int = Field(7 * 24 * 3600, gt=0, description="job records and bitstreams expire after this")
    sweep_interval_s: float = Field(
        3600.0, gt=0, description="the API deletes expired bitstreams and ended jobs' uploads this often"
    )
    job_retries: int = Field(1, ge=0, description="retries of a job whose worker died")
    progress_interval_s: float = Field(0.5, ge=0, description="minimum time between progress writes")
    retry_after_s: int = 2

    # --- worker liveness
    heartbeat_interval_s: int = Field(10, gt=0, description="worker heartbeat period while a job runs")
    heartbeat_grace_s: int = Field(30, gt=0, description="a job is abandoned after interval + grace without one")

    # --- models: the loaded-model cache of each process (API and worker), extra checkpoints
    decode_cache_models: int = Field(4, gt=0)
    checkpoints: str = Field(
        "",
        description="extra models, NAME=PATH[@ARCH[@LAMBDA]] entries separated by ':' (codec.zoo.parse_checkpoints)",
    )

    # --- decoding in the API (service/decoding.py): two lanes of decoder processes by padded pixel count
    decode_small_max_pixels: int = Field(
        2_097_152, gt=0, description="padded pixel counts up to this decode in the small lane (full HD fits)"
    )
    decode_small_workers: int = Field(1, gt=0, description="decoder processes of the small lane")
    decode_large_workers: int = Field(1, gt=0, description="decoder processes of the large lane")
    decode_large_nice: int = Field(
        10, ge=0, le=19, description="CPU niceness of the large lane's processes: small decodes get the cores first"
    )
    decode_bytes_per_pixel: int = Field(
        200, gt=0, description="decode memory per padded pixel (measured: peak minus an idle decoder process)"
    )
    decode_tiled_bytes_per_pixel: int = Field(
        32, gt=0, description="the same for files coded in tiles (measured 20-26), plus a fixed part per tile"
    )
    decode_memory_budget_mb: int = Field(
        12288, gt=0, description="decode memory of both lanes; large decodes get what the small lane cannot use"
    )
    decode_wait_timeout_s: float = Field(10.0, gt=0, description="longest wait for a decoder before 503")
    decode_queue_depth: int = Field(16, ge=0, description="requests that may wait in each lane before 503")
    decoded_image_cache_mb: int = Field(
        256, ge=0, description="PNGs of stored bitstreams kept in memory (LRU; they expire with the bitstream)"
    )

    # --- tiled coding (codec.tiling): images above the threshold are coded in tiles, memory set by the tile
    tile_threshold_pixels: int = Field(
        4_194_304, ge=0, description="padded pixel counts above this are encoded (and old files decoded) in tiles"
    )
    tile_px: int = Field(512, ge=64, le=65536, multiple_of=64, description="tile side in pixels")

    # --- the local stack (python -m service.stack): defaults of its --port and --redis-port
    port: int = Field(8000, gt=0, lt=65536)
    redis_port: int = Field(6379, gt=0, lt=65536)

    # --- the web page's comparison (POST /v1/compare): JPEG/WebP/AVIF searched to a byte size in the API
    compare_max_pixels: int = Field(
        2_100_000, gt=0, description="images above this many pixels are refused by /v1/compare (full HD fits)"
    )
    compare_wait_s: float = Field(60.0, gt=0, description="longest wait for the one comparison slot before 503")

    # --- security: "key1:alice,key2:bob" (key:owner); empty = no authentication
    api_keys: str = ""

    # --- fair use per API key (service/fairness.py)
    max_active_jobs_per_owner: int = Field(
        32, gt=0, description="queued + running jobs one owner may have; one more is answered 429"
    )
    active_jobs_retry_after_s: int = Field(10, gt=0, description="Retry-After of the 429 for too many unfinished jobs")
    rate_limit_requests: int = Field(
        600, ge=0, description="requests one API key may make per rate_limit_window_s (0: no limit; no keys: none)"
    )
    rate_limit_window_s: int = Field(10, gt=0, description="the rate limit's fixed window")
    fair_dispatch_interval_s: float = Field(
        0.2, gt=0, description="how often the API moves each owner's next job into the queue (service/fairness.py)"
    )

    # --- webhooks (service/webhooks.py): a signed POST to a job's callback_url when it ends
    webhook_secret: str = Field("", description="signs every owner's events (each owner gets its own derived key)")
    webhook_allow_hosts: str = Field(
        "", description="hosts or networks (comma-separated) allowed though loopback/private, e.g. 127.0.0.1"
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="one delivery attempt's time limit")
    webhook_backoff_s: float = Field(2.0, gt=0, description="first retry delay; doubles per attempt (at most 60 s)")
    webhook_max_attempts: int = Field(8, ge=1, description="delivery stops after this many attempts")
    webhook_retry_for_s: float = Field(900.0, gt=0, description="... or once this long has passed since the first")
    webhook_concurrency: int = Field(8, ge=1, description="deliveries one API process sends at once")
    webhook_interval_s: float = Field(0.25, gt=0, description="how often the API looks for due deliveries")

    # --- logging
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, v: str) -> str:
        for item in filter(None, (s.strip() for s in v.split(","))):
            key, sep, owner = item.partition(":")
            if not key or not sep or not owner:
                raise ValueError("UDIC_API_KEYS takes key:owner pairs separated by commas")
        return v

    def key_owners(self) -> dict[str, str]:
        out = {}
        for item in filter(None, (s.strip() for s in self.api_keys.split(","))):
            key, _, owner = item.partition(":")
            out[key] = owner
        return out

    @property
    def domains_path(self) -> Path:
        return self.domains_dir or self.storage_root / "domains"

    @property
    def auth_enabled(self) -> bool:
        return bool(self.key_owners())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
