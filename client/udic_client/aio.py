"""The asynchronous client: the same surface as :class:`udic_client.Client`, with ``await``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from udic_client import _core
from udic_client._core import ImageSource, ProgressArg, RoiArg
from udic_client.errors import JobCancelledError, JobFailedError, TransportError, WaitTimeoutError
from udic_client.models import CompressResult, Job


class AsyncClient:
    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        poll_interval: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.retries, self.poll_interval = retries, poll_interval
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=_core.auth_headers(api_key), timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        attempt = 0
        while True:
            response, error = None, None
            try:
                response = await self._http.request(method, path, **kw)
            except httpx.HTTPError as exc:
                error = exc
            if not _core.should_retry(response, error, attempt, self.retries):
                if error is not None:
                    raise TransportError(f"{method} {path}: {error}") from error
                assert response is not None  # no transport error: the request returned one
                return _core.check(response)
            await asyncio.sleep(_core.retry_delay(attempt, response))
            attempt += 1

    async def submit(
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
        files, data, headers = _core.compress_form(
            image, model, quality, lmbda, adaptation, time_budget_s, idempotency_key, domain
        )
        data.update(_core.target_fields(target_bytes, target_bpp, target_psnr))
        roi_data, roi_files = _core.roi_parts(roi)
        data.update(roi_data)
        files.update(roi_files)
        if callback_url:
            data["callback_url"] = callback_url
        r = await self._request("POST", "/v1/jobs", files=files, data=data, headers=headers)
        return Job.model_validate(r.json())

    async def job(self, job_id: str) -> Job:
        return Job.model_validate((await self._request("GET", f"/v1/jobs/{job_id}")).json())

    async def jobs(self, limit: int = 50, state: str | None = None) -> list[Job]:
        """Your newest jobs (of one state if given); GET /v1/jobs pages further with next_cursor."""
        params: dict[str, str | int] = {"limit": limit, **({"state": state} if state else {})}
        r = await self._request("GET", "/v1/jobs", params=params)
        return [Job.model_validate(j) for j in r.json()["jobs"]]

    async def wait(
        self, job_id: str, *, timeout: float | None = None, progress: ProgressArg = False, raise_on_failure: bool = True
    ) -> Job:
        show = _core.ProgressPrinter(progress)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            response = await self._request("GET", f"/v1/jobs/{job_id}")
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
            await asyncio.sleep(_core.poll_interval(job, response, self.poll_interval))

    async def cancel(self, job_id: str) -> Job:
        return Job.model_validate((await self._request("DELETE", f"/v1/jobs/{job_id}")).json())

    async def download(self, job_id: str) -> bytes:
        return (await self._request("GET", f"/v1/bitstreams/{job_id}")).content

    async def download_image(self, job_id: str, format: str = "png") -> Any:
        return _core.png_or_image((await self._request("GET", f"/v1/bitstreams/{job_id}/image")).content, format)

    async def decode(self, bitstream: bytes, format: str = "png") -> Any:
        r = await self._request(
            "POST", "/v1/decode", content=bitstream, headers={"Content-Type": "application/octet-stream"}
        )
        return _core.png_or_image(r.content, format)

    async def compress(
        self,
        image: ImageSource,
        *,
        model: str = "default",
        quality: float | None = None,
        lmbda: float | None = None,
        adaptation: str = "none",
        time_budget_s: float | None = None,
        wait: bool = True,
        progress: ProgressArg = False,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        domain: str | None = None,
        target_bytes: int | None = None,
        target_bpp: float | None = None,
        target_psnr: float | None = None,
        roi: RoiArg = None,
    ) -> CompressResult | Job:
        job = await self.submit(
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
        job = await self.wait(job.id, timeout=timeout, progress=progress)
        return CompressResult(job=job, metrics=job.metrics, bitstream=await self.download(job.id))

    async def train_domain(
        self,
        name: str,
        images: list[ImageSource],
        *,
        model: str = "default",
        steps: int = 2000,
        stage2_steps: int = 500,
        time_budget_s: float | None = None,
        wait: bool = True,
        progress: ProgressArg = False,
        timeout: float | None = None,
    ) -> Job:
        files = _core.domain_files(images)
        data = {"name": name, "model": model, "steps": str(steps), "stage2_steps": str(stage2_steps)}
        if time_budget_s is not None:
            data["time_budget_s"] = str(time_budget_s)
        job = Job.model_validate((await self._request("POST", "/v1/domains", files=files, data=data)).json())
        return await self.wait(job.id, timeout=timeout, progress=progress) if wait else job

    async def domains(self) -> list[dict[str, Any]]:
        return (await self._request("GET", "/v1/domains")).json()["domains"]

    async def domain(self, domain_id: str) -> dict[str, Any]:
        return (await self._request("GET", f"/v1/domains/{domain_id}")).json()

    async def models(self) -> list[dict[str, Any]]:
        return (await self._request("GET", "/v1/models")).json()

    async def health(self) -> bool:
        try:
            return (await self._http.get("/readyz")).status_code == 200
        except httpx.HTTPError:
            return False
