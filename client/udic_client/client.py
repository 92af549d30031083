"""The synchronous client."""

from __future__ import annotations

import time
from typing import Any

import httpx

from udic_client import _core
from udic_client._core import ImageSource, ProgressArg, RoiArg
from udic_client.errors import JobCancelledError, JobFailedError, TransportError, WaitTimeoutError
from udic_client.models import CompressResult, Job


class Client:
    """``Client(url, api_key=None)``: compress, poll, cancel, download and decode.

    Transient failures (connection errors, 429/502/503/504) are retried ``retries`` times with
    backoff; job uploads carry an Idempotency-Key, so retrying them is safe.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        poll_interval: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.retries, self.poll_interval = retries, poll_interval
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=_core.auth_headers(api_key), timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing
    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        attempt = 0
        while True:
            response, error = None, None
            try:
                response = self._http.request(method, path, **kw)
            except httpx.HTTPError as exc:
                error = exc
            if not _core.should_retry(response, error, attempt, self.retries):
                if error is not None:
                    raise TransportError(f"{method} {path}: {error}") from error
                assert response is not None  # no transport error: the request returned one
                return _core.check(response)
            time.sleep(_core.retry_delay(attempt, response))
            attempt += 1

    # ------------------------------------------------------------------ API
    def submit(
        self,
        image: ImageSource,
        *,
        model: str = "default",
        quality: float | None = None,
        lmbda: float | None = None,
        adaptation: str = "none",
        time_budget_s: float | None = None,
        idempotency_key: str | None = None,
        domain: str | None = None,
        target_bytes: int | None = None,
        target_bpp: float | None = None,
        target_psnr: float | None = None,
        roi: RoiArg = None,
        callback_url: str | None = None,
    ) -> Job:
        """Upload an image and queue its encode; returns at once with the queued job.
        ``callback_url`` gets a signed POST when the job ends (check it with ``verify_webhook``)."""
        files, data, headers = _core.compress_form(
            image, model, quality, lmbda, adaptation, time_budget_s, idempotency_key, domain
        )
        data.update(_core.target_fields(target_bytes, target_bpp, target_psnr))
        roi_data, roi_files = _core.roi_parts(roi)
        data.update(roi_data)
        files.update(roi_files)
        if callback_url:
            data["callback_url"] = callback_url
        return Job.model_validate(self._request("POST", "/v1/jobs", files=files, data=data, headers=headers).json())

    def job(self, job_id: str) -> Job:
        return Job.model_validate(self._request("GET", f"/v1/jobs/{job_id}").json())

    def jobs(self, limit: int = 50, state: str | None = None) -> list[Job]:
        """Your newest jobs (of one state if given); GET /v1/jobs pages further with next_cursor."""
        params: dict[str, str | int] = {"limit": limit, **({"state": state} if state else {})}
        return [Job.model_validate(j) for j in self._request("GET", "/v1/jobs", params=params).json()["jobs"]]

    def wait(
        self, job_id: str, *, timeout: float | None = None, progress: ProgressArg = False, raise_on_failure: bool = True
    ) -> Job:
        """Poll until the job ends (or ``timeout`` seconds pass: WaitTimeoutError)."""
        show = _core.ProgressPrinter(progress)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            response = self._request("GET", f"/v1/jobs/{job_id}")
            job = Job.model_validate(response.json())
            show(job)
            if job.done:
                if raise_on_failure and job.state == "failed":
                    raise JobFailedError(job)
                if raise_on_failure and job.state == "cancelled":
                    raise JobCancelledError(job)
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(f"job {job_id} still {job.state} after {timeout} s")
            time.sleep(_core.poll_interval(job, response, self.poll_interval))

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self._request("DELETE", f"/v1/jobs/{job_id}").json())

    def download(self, job_id: str) -> bytes:
        """The .udic bitstream of a finished job."""
        return self._request("GET", f"/v1/bitstreams/{job_id}").content

    def download_image(self, job_id: str, format: str = "png") -> Any:
        return _core.png_or_image(self._request("GET", f"/v1/bitstreams/{job_id}/image").content, format)

    def decode(self, bitstream: bytes, format: str = "png") -> Any:
        """Decode .udic bytes on the server: PNG bytes (default; no Pillow needed) or, with
        ``format='pil'`` and the ``[pil]`` extra, a PIL image."""
        png = self._request(
            "POST", "/v1/decode", content=bitstream, headers={"Content-Type": "application/octet-stream"}
        ).content
        return _core.png_or_image(png, format)

    def compress(
        self,
        image: ImageSource,
        *,
        model: str = "default",
        quality: float | None = None,
        lmbda: float | None = None,
        adaptation: str = "none",
        time_budget_s: float | None = None,
        wait: bool = True,
        progress: ProgressArg = True,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        domain: str | None = None,
        target_bytes: int | None = None,
        target_bpp: float | None = None,
        target_psnr: float | None = None,
        roi: RoiArg = None,
    ) -> CompressResult | Job:
        """Upload, and (``wait=True``) wait for the encode and download the bitstream."""
        job = self.submit(
            image,
            model=model,
            quality=quality,
            lmbda=lmbda,
            adaptation=adaptation,
            time_budget_s=time_budget_s,
            idempotency_key=idempotency_key,
            domain=domain,
            target_bytes=target_bytes,
            target_bpp=target_bpp,
            target_psnr=target_psnr,
            roi=roi,
        )
        if not wait:
            return job
        job = self.wait(job.id, timeout=timeout, progress=progress)
        return CompressResult(job=job, metrics=job.metrics, bitstream=self.download(job.id))

    def train_domain(
        self,
        name: str,
        images: list[ImageSource],
        *,
        model: str = "default",
        steps: int = 2000,
        stage2_steps: int = 500,
        time_budget_s: float | None = None,
        wait: bool = True,
        progress: ProgressArg = True,
        timeout: float | None = None,
    ) -> Job:
        """Train a domain adapter from 5-25 sample images (a job); with ``wait`` the finished job,
        whose ``domain`` field has the adapter's id and measured gain."""
        files = _core.domain_files(images)
        data = {"name": name, "model": model, "steps": str(steps), "stage2_steps": str(stage2_steps)}
        if time_budget_s is not None:
            data["time_budget_s"] = str(time_budget_s)
        job = Job.model_validate(self._request("POST", "/v1/domains", files=files, data=data).json())
        return self.wait(job.id, timeout=timeout, progress=progress) if wait else job

    def domains(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/domains").json()["domains"]

    def domain(self, domain_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/domains/{domain_id}").json()

    def models(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/models").json()

    def health(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False
