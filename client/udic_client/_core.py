"""What the sync and async clients share: request building, response checks, retry policy,
progress display. Only the I/O differs between the two."""

from __future__ import annotations

import io
import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from udic_client.errors import ApiError, error_from_response
from udic_client.models import Job

ImageSource = str | os.PathLike | bytes
RoiArg = str | list[dict[str, float]] | bytes | os.PathLike | None  # see roi_parts
ProgressArg = bool | Callable[[Job], None]

RETRY_STATUSES = {429, 502, 503, 504}
TRANSIENT_ERRORS = (
    httpx.ConnectError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def compress_form(
    image: ImageSource,
    model: str,
    quality: float | None,
    lmbda: float | None,
    adaptation: str,
    time_budget_s: float | None,
    idempotency_key: str | None,
    domain: str | None = None,
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """(files, data, headers) for POST /v1/jobs. An Idempotency-Key is always sent, so a retried
    upload never creates a second job."""
    content, name = _read(image)
    data = {"model": model, "adaptation": adaptation}
    if domain is not None:
        data["domain"] = domain
    if quality is not None:
        data["quality"] = str(quality)
    if lmbda is not None:
        data["lambda"] = str(lmbda)
    if time_budget_s is not None:
        data["time_budget_s"] = str(time_budget_s)
    files = {"file": (name, content, "application/octet-stream")}
    headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
    return files, data, headers


def target_fields(target_bytes: int | None, target_bpp: float | None, target_psnr: float | None) -> dict[str, str]:
    """Form fields for a rate target instead of a quality (the server refuses more than one, or one
    with a quality: 422 invalid-target)."""
    given = {"target_bytes": target_bytes, "target_bpp": target_bpp, "target_psnr": target_psnr}
    return {k: str(v) for k, v in given.items() if v is not None}


def roi_parts(roi: RoiArg) -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
    """(form fields, file parts) for a region of interest: ``"auto"``, a list of rectangles
    ``{"x", "y", "w", "h", "weight"}``, or a mask PNG (bytes or path) of the image's size, grey = weight.
    It steers the adaptive encode, so give an ``adaptation`` preset with it."""
    if roi is None:
        return {}, {}
    if isinstance(roi, str) and roi == "auto":
        return {"roi": "auto"}, {}
    if isinstance(roi, list):
        return {"roi_rects": json.dumps(roi)}, {}
    content, name = _read(roi)
    return {}, {"roi_mask": (name if name != "image" else "mask.png", content, "image/png")}


def _read(image: ImageSource) -> tuple[bytes, str]:
    if isinstance(image, (bytes, bytearray)):
        return bytes(image), "image"
    path = Path(image)
    return path.read_bytes(), path.name


def domain_files(images: list[ImageSource]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Multipart parts for POST /v1/domains (one 'files' part per sample image)."""
    out = []
    for i, image in enumerate(images):
        content, name = _read(image)
        out.append(("files", (name if name != "image" else f"sample{i}", content, "application/octet-stream")))
    return out


def check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise error_from_response(response.status_code, body, response.text)
    return response


def retry_delay(attempt: int, response: httpx.Response | None) -> float:
    if response is not None:
        ra = response.headers.get("retry-after")
        if ra and ra.isdigit():
            return min(float(ra), 30.0)
    return min(0.25 * 2**attempt, 8.0)


def should_retry(response: httpx.Response | None, error: BaseException | None, attempt: int, retries: int) -> bool:
    if attempt >= retries:
        return False
    if error is not None:
        return isinstance(error, TRANSIENT_ERRORS)
    return response is not None and response.status_code in RETRY_STATUSES


def poll_interval(job: Job, response: httpx.Response | None, default: float) -> float:
    if response is not None:
        ra = response.headers.get("retry-after")
        if ra and ra.isdigit():
            return max(0.2, min(float(ra), default))
    return default


class ProgressPrinter:
    """progress=True: one updating line on stderr; a callable: called with every Job seen."""

    def __init__(self, progress: ProgressArg):
        self.fn = progress if callable(progress) else None
        self.show = progress is True and sys.stderr is not None
        self.last = ""

    def __call__(self, job: Job) -> None:
        if self.fn is not None:
            self.fn(job)
        if not self.show:
            return
        p = job.progress
        parts = [f"job {job.id[:8]}: {job.state}"]
        if p is not None and job.state == "running":
            parts.append(p.stage)
            if p.total:
                parts.append(f"{p.iteration}/{p.total}")
            if p.bpp is not None:
                parts.append(f"{p.bpp:.3f} bpp")
            if p.psnr is not None:
                parts.append(f"{p.psnr:.2f} dB")
            parts.append(f"{p.elapsed_s:.1f}s")
        line = " ".join(parts)
        if line != self.last:
            sys.stderr.write("\r" + line.ljust(len(self.last)))
            sys.stderr.flush()
            self.last = line
        if job.done:
            sys.stderr.write("\n")
            sys.stderr.flush()


def png_or_image(png: bytes, format: str) -> Any:
    if format == "png":
        return png
    if format != "pil":
        raise ValueError("format must be 'pil' or 'png'")
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "decode(format='pil') needs Pillow: pip install 'udic-client[pil]', or use format='png'"
        ) from exc
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


def is_api_error(exc: BaseException) -> bool:
    return isinstance(exc, ApiError)
